// The microphone's AudioWorklet: mixes to mono, resamples to 16 kHz and
// posts 20 ms frames of 16-bit samples (320 of them, s16le, as an
// ArrayBuffer) to the page, which sends them over the talk socket.
// Downsampling runs two low-pass biquads at 7 kHz (anti-aliasing), then
// linear interpolation.
"use strict";

const OUT_RATE = 16000;
const FRAME = 320;

// A second-order low-pass (RBJ audio EQ cookbook), Q = 1/√2.
function lowPass(rate, cutoff) {
  const w = (2 * Math.PI * cutoff) / rate;
  const alpha = Math.sin(w) / (2 * Math.SQRT1_2);
  const cos = Math.cos(w);
  const a0 = 1 + alpha;
  const b0 = (1 - cos) / 2 / a0;
  return { b0, b1: (1 - cos) / a0, b2: b0, a1: (-2 * cos) / a0, a2: (1 - alpha) / a0, x1: 0, x2: 0, y1: 0, y2: 0 };
}

function filter(f, x) {
  const y = f.b0 * x + f.b1 * f.x1 + f.b2 * f.x2 - f.a1 * f.y1 - f.a2 * f.y2;
  f.x2 = f.x1;
  f.x1 = x;
  f.y2 = f.y1;
  f.y1 = y;
  return y;
}

class Mic16k extends AudioWorkletProcessor {
  constructor() {
    super();
    // `sampleRate` is the AudioWorkletGlobalScope's: the context's rate.
    this.step = sampleRate / OUT_RATE; // input samples per output sample
    this.filters = this.step > 1 ? [lowPass(sampleRate, 7000), lowPass(sampleRate, 7000)] : [];
    this.t = 0; // position of the next output sample, in input samples from this block's start
    this.prev = 0; // the last (filtered) input sample of the previous block
    this.out = new Int16Array(FRAME);
    this.n = 0;
    this.block = new Float32Array(128);
  }

  emit(v) {
    const s = Math.max(-1, Math.min(1, v));
    this.out[this.n++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.n === FRAME) {
      this.port.postMessage(this.out.buffer, [this.out.buffer]);
      this.out = new Int16Array(FRAME);
      this.n = 0;
    }
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0 || input[0].length === 0) return true;
    const len = input[0].length;
    if (this.block.length !== len) this.block = new Float32Array(len);
    const x = this.block;
    for (let i = 0; i < len; i++) {
      let v = 0;
      for (let c = 0; c < input.length; c++) v += input[c][i];
      v /= input.length;
      for (const f of this.filters) v = filter(f, v);
      x[i] = v;
    }
    // Linear interpolation at t, t + step, …; t in [-1, 0) lies between the
    // previous block's last sample and x[0].
    let t = this.t;
    while (t < len - 1) {
      const i = Math.floor(t);
      const frac = t - i;
      const a = i < 0 ? this.prev : x[i];
      const b = x[i + 1];
      this.emit(a + (b - a) * frac);
      t += this.step;
    }
    this.t = t - len;
    this.prev = x[len - 1];
    return true;
  }
}

registerProcessor("mic-16k", Mic16k);
