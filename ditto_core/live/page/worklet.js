// Microphone capture: the first input channel, posted to the page in ~20-ms blocks of float32 samples at the
// AudioContext's rate (the page sends them as f32le with that sample_rate; the server resamples).
class DittoCapture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.block = new Float32Array(Math.max(128, Math.round(sampleRate / 50)));
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (channels && channels.length) {
      const input = channels[0];
      let offset = 0;
      while (offset < input.length) {
        const n = Math.min(input.length - offset, this.block.length - this.filled);
        if (channels.length > 1) {
          for (let i = 0; i < n; i++) {
            let sum = 0;
            for (const channel of channels) sum += channel[offset + i];
            this.block[this.filled + i] = sum / channels.length;
          }
        } else {
          this.block.set(input.subarray(offset, offset + n), this.filled);
        }
        this.filled += n;
        offset += n;
        if (this.filled === this.block.length) {
          this.port.postMessage(this.block.slice());
          this.filled = 0;
        }
      }
    }
    return true;
  }
}

registerProcessor("ditto-capture", DittoCapture);
