"""Command line: ``python -m ditto_core check --models DIR [--run]``."""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .models import NETWORKS, CheckpointError, load_network
from .models.examples import example_inputs
from .release import check_release


def _shapes(output: object) -> str:
    outputs = output if isinstance(output, tuple) else (output,)
    return ", ".join("x".join(map(str, o.shape)) for o in outputs)


def check(models: str, run: bool, device: str) -> int:
    """Report the release files under ``models``, load every network present and optionally run it once."""
    status = check_release(models)
    print(status.report())
    failures = 0
    for kind in NETWORKS:
        path = status.present.get(kind)
        if path is None:
            failures += 1
            continue
        try:
            net = load_network(kind, path, device=device)
        except CheckpointError as exc:
            print(f"FAILED {kind}: {exc}")
            failures += 1
            continue
        params = sum(p.numel() for p in net.parameters())
        line = f"loaded {kind}: {params / 1e6:.3f} M parameters"
        if run:
            inputs = example_inputs(kind, net)
            start = time.perf_counter()
            with torch.inference_mode():
                output = net(*inputs)
            line += f"; forward on random input → {_shapes(output)} in {time.perf_counter() - start:.2f} s"
        print(line)
    if failures:
        print(f"{failures} of {len(NETWORKS)} networks are missing or unusable.")
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ditto_core", description="ComfyUI-Ditto core tools")
    commands = parser.add_subparsers(dest="command", required=True)
    check_cmd = commands.add_parser("check", help="report which release files are present and load the networks")
    check_cmd.add_argument("--models", required=True, help="folder holding ditto_pytorch/ (the Hugging Face repo)")
    check_cmd.add_argument("--run", action="store_true", help="also run each network once on random input")
    check_cmd.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    return check(args.models, args.run, args.device)


if __name__ == "__main__":
    sys.exit(main())
