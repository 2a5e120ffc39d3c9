"""ComfyUI-Ditto core: audio-driven talking-head models and pipeline, importable without ComfyUI."""
