//! Linear layers with int8 weights for the sentence encoder: `y = x·Wᵀ + b`
//! with `W` quantised per output row (symmetric, `[-127, 127]`) and each
//! input row quantised when the layer runs (symmetric, 14 bits, its own
//! scale). The dot products are exact integers, scaled once per output:
//! weight-only rounding keeps the vectors within ~0.1 % of f32 (7-bit
//! inputs lost ~2 % on short texts), and the SIMD kernels run ~20× a
//! scalar loop.
//!
//! The kernels multiply 16-bit pairs into 32-bit sums (`pmaddwd`) through
//! pulp's safe wrappers, chosen at run time: AVX-512 (32 pairs a step),
//! AVX2 (16), or plain Rust elsewhere (which the compiler vectorises with
//! SSE2's `pmaddwd`, or NEON on ARM). Weights are kept widened to 16 bits,
//! so the inner loop is a load and a multiply-add.

use rayon::prelude::*;

/// The widest instruction set this CPU has for the kernels.
#[derive(Clone, Copy, Debug)]
pub enum Simd {
    #[cfg(target_arch = "x86_64")]
    Avx512(pulp::x86::V4),
    #[cfg(target_arch = "x86_64")]
    Avx2(pulp::x86::V3),
    Portable,
}

impl Simd {
    /// The best available here; `CINEMA_ENCODER_SIMD=portable|avx2` caps it
    /// (to compare kernels, or on a CPU that misreports its features).
    pub fn detect() -> Simd {
        let cap = std::env::var("CINEMA_ENCODER_SIMD").unwrap_or_default();
        Simd::best(&cap)
    }

    /// The best instruction set up to `cap` ("" or "avx512": any).
    pub fn best(cap: &str) -> Simd {
        if cap == "portable" {
            return Simd::Portable;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if cap != "avx2" {
                if let Some(s) = pulp::x86::V4::try_new() {
                    return Simd::Avx512(s);
                }
            }
            if let Some(s) = pulp::x86::V3::try_new() {
                return Simd::Avx2(s);
            }
        }
        Simd::Portable
    }

    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512(_) => "avx512",
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2(_) => "avx2",
            Simd::Portable => "portable",
        }
    }

    /// Runs `f` compiled for this instruction set, so the compiler may
    /// vectorise plain loops in it (`f` and what it calls must inline).
    #[inline(always)]
    pub fn vectorize<R>(self, f: impl FnOnce() -> R) -> R {
        match self {
            #[cfg(target_arch = "x86_64")]
            Simd::Avx512(s) => s.vectorize(f),
            #[cfg(target_arch = "x86_64")]
            Simd::Avx2(s) => s.vectorize(f),
            Simd::Portable => f(),
        }
    }
}

/// Rows of activations quantised for a [`Linear`]: `x ≈ scale · q`.
#[derive(Debug, Default)]
pub struct Rows {
    pub q: Vec<i16>,
    pub scale: Vec<f32>,
    pub width: usize,
}

/// The largest input code for rows of `width`: 14 bits, less for very wide
/// rows, so that `width` products of codes and weights (≤ 127) can never
/// overflow an `i32` sum.
pub fn input_limit(width: usize) -> f32 {
    (i32::MAX as usize / (width.max(1) * 127)).min(8191) as f32
}

impl Rows {
    pub fn len(&self) -> usize {
        self.scale.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }

    /// Quantises the rows of `x` (each `width` floats), each over its own
    /// largest magnitude.
    pub fn quantize(simd: Simd, x: &[f32], width: usize, out: &mut Rows) {
        let rows = x.len() / width.max(1);
        let limit = input_limit(width);
        out.width = width;
        out.q.resize(rows * width, 0);
        out.scale = x
            .par_chunks(width)
            .zip(out.q.par_chunks_mut(width))
            .with_min_len(32)
            .map(|(row, q)| simd.vectorize(|| quantize_row(row, q, limit)))
            .collect();
    }
}

/// Rounds to the nearest integer (ties to even) without a library call, so
/// loops using it vectorise; exact for |x| < 2²².
#[inline(always)]
pub fn round(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2²³
    (x + MAGIC) - MAGIC
}

#[inline(always)]
fn quantize_row(row: &[f32], q: &mut [i16], limit: f32) -> f32 {
    let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
    if !(max > 0.0 && max.is_finite()) {
        q.fill(0);
        return 1.0;
    }
    let scale = max / limit;
    let inv = limit / max;
    for (o, &v) in q.iter_mut().zip(row) {
        *o = round(v * inv).clamp(-limit, limit) as i16;
    }
    scale
}

/// `y = x·Wᵀ + b` with `W` (`outputs × inputs`) in int8.
#[derive(Debug)]
pub struct Linear {
    pub inputs: usize,
    pub outputs: usize,
    /// Row-major `outputs × inputs`: codes in `[-127, 127]`, widened.
    w: Vec<i16>,
    /// Per output row: `W[j] ≈ scale[j] · w[j]`.
    scale: Vec<f32>,
    bias: Vec<f32>,
}

/// Columns computed together, sized so their weights stay in L1.
fn block_columns(inputs: usize) -> usize {
    ((16 * 1024 / inputs.max(1)) / 4 * 4).clamp(4, 64)
}

impl Linear {
    /// Quantises `weight` (row-major `outputs × inputs`, as stored by
    /// PyTorch) and keeps `bias` (`outputs`).
    pub fn new(weight: &[f32], bias: &[f32], outputs: usize, inputs: usize) -> Option<Linear> {
        if weight.len() != outputs * inputs || bias.len() != outputs || inputs == 0 {
            return None;
        }
        let mut w = vec![0i16; weight.len()];
        let mut scale = Vec::with_capacity(outputs);
        for (row, q) in weight.chunks_exact(inputs).zip(w.chunks_exact_mut(inputs)) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 && max.is_finite() {
                max / 127.0
            } else {
                1.0
            };
            for (o, &v) in q.iter_mut().zip(row) {
                *o = round(v / s).clamp(-127.0, 127.0) as i16;
            }
            scale.push(s);
        }
        Some(Linear {
            inputs,
            outputs,
            w,
            scale,
            bias: bias.to_vec(),
        })
    }

    /// Bytes of weights held in memory.
    pub fn bytes(&self) -> usize {
        self.w.len() * 2 + self.outputs * 8
    }

    /// `y` (`x.len() × outputs`, row-major) from the quantised rows `x`.
    /// Blocks of columns run on the rayon pool.
    pub fn forward(&self, simd: Simd, x: &Rows, y: &mut Vec<f32>) {
        let (m, n) = (x.len(), self.outputs);
        y.clear();
        y.resize(m * n, 0.0);
        if m == 0 || x.width != self.inputs {
            return;
        }
        let cb = block_columns(self.inputs);
        let blocks: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(cb))
            .into_par_iter()
            .map(|b| {
                let (c0, c1) = (b * cb, ((b + 1) * cb).min(n));
                let width = c1 - c0;
                let mut dots = vec![0i32; m * width];
                dot_block(simd, &x.q, m, &self.w, self.inputs, c0, c1, &mut dots);
                let mut out = vec![0f32; m * width];
                for r in 0..m {
                    let sx = x.scale[r];
                    for c in 0..width {
                        let j = c0 + c;
                        out[r * width + c] =
                            sx * self.scale[j] * dots[r * width + c] as f32 + self.bias[j];
                    }
                }
                (c0, out)
            })
            .collect();
        for (c0, block) in blocks {
            let width = block.len() / m;
            for (r, part) in block.chunks_exact(width).enumerate() {
                y[r * n + c0..r * n + c0 + width].copy_from_slice(part);
            }
        }
    }
}

/// `dots[r][c − c0] = Σₗ x[r][l] · w[c][l]` for rows `0..m`, columns `c0..c1`.
#[allow(clippy::too_many_arguments)]
fn dot_block(
    simd: Simd,
    x: &[i16],
    m: usize,
    w: &[i16],
    k: usize,
    c0: usize,
    c1: usize,
    dots: &mut [i32],
) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512(s) if k % 32 == 0 => {
            s.vectorize(|| x86::dots_avx512(s, x, m, w, k, c0, c1, dots))
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512(s) if k % 16 == 0 => {
            let s: pulp::x86::V3 = *s;
            s.vectorize(|| x86::dots_avx2(s, x, m, w, k, c0, c1, dots))
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2(s) if k % 16 == 0 => s.vectorize(|| x86::dots_avx2(s, x, m, w, k, c0, c1, dots)),
        _ => simd.vectorize(|| dots_portable(x, m, w, k, c0, c1, dots)),
    }
}

/// The last `width % 4` columns of a block, which the SIMD kernels leave.
#[inline(always)]
fn dots_tail(x: &[i16], m: usize, w: &[i16], k: usize, c0: usize, c1: usize, dots: &mut [i32]) {
    let width = c1 - c0;
    for c in c0 + width / 4 * 4..c1 {
        for r in 0..m {
            dots[r * width + c - c0] = dot_portable(&x[r * k..(r + 1) * k], &w[c * k..(c + 1) * k]);
        }
    }
}

#[inline(always)]
fn dot_portable(x: &[i16], w: &[i16]) -> i32 {
    x.iter()
        .zip(w)
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum()
}

#[inline(always)]
fn dots_portable(x: &[i16], m: usize, w: &[i16], k: usize, c0: usize, c1: usize, dots: &mut [i32]) {
    let width = c1 - c0;
    for r in 0..m {
        let xr = &x[r * k..(r + 1) * k];
        for c in c0..c1 {
            dots[r * width + c - c0] = dot_portable(xr, &w[c * k..(c + 1) * k]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{__m256i, __m512i};
    use pulp::bytemuck;
    use pulp::x86::{V3, V4};

    /// 32 values from the start of `v` as one vector (an unaligned load).
    #[inline(always)]
    fn load32(v: &[i16]) -> __m512i {
        bytemuck::pod_read_unaligned(bytemuck::cast_slice(&v[..32]))
    }

    #[inline(always)]
    fn load16(v: &[i16]) -> __m256i {
        bytemuck::pod_read_unaligned(bytemuck::cast_slice(&v[..16]))
    }

    /// Two rows × four columns at a time; `k` a multiple of 32.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn dots_avx512(
        s: V4,
        x: &[i16],
        m: usize,
        w: &[i16],
        k: usize,
        c0: usize,
        c1: usize,
        dots: &mut [i32],
    ) {
        let width = c1 - c0;
        let (f, bw) = (s.avx512f, s.avx512bw);
        for r in (0..m).step_by(2) {
            let two = r + 1 < m;
            let x0 = &x[r * k..(r + 1) * k];
            let x1 = if two {
                &x[(r + 1) * k..(r + 2) * k]
            } else {
                x0
            };
            for c in (c0..c0 + width / 4 * 4).step_by(4) {
                let mut acc = [f._mm512_setzero_si512(); 8];
                for i in (0..k).step_by(32) {
                    let (a0, a1) = (load32(&x0[i..]), load32(&x1[i..]));
                    for j in 0..4 {
                        let b = load32(&w[(c + j) * k + i..]);
                        acc[j] = f._mm512_add_epi32(acc[j], bw._mm512_madd_epi16(a0, b));
                        acc[4 + j] = f._mm512_add_epi32(acc[4 + j], bw._mm512_madd_epi16(a1, b));
                    }
                }
                for j in 0..4 {
                    dots[r * width + c - c0 + j] = f._mm512_reduce_add_epi32(acc[j]);
                    if two {
                        dots[(r + 1) * width + c - c0 + j] = f._mm512_reduce_add_epi32(acc[4 + j]);
                    }
                }
            }
        }
        super::dots_tail(x, m, w, k, c0, c1, dots);
    }

    /// As [`dots_avx512`] with 32-byte vectors; `k` a multiple of 16.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn dots_avx2(
        s: V3,
        x: &[i16],
        m: usize,
        w: &[i16],
        k: usize,
        c0: usize,
        c1: usize,
        dots: &mut [i32],
    ) {
        let width = c1 - c0;
        let hsum = |v: __m256i| -> i32 { bytemuck::cast::<_, [i32; 8]>(v).iter().sum() };
        for r in (0..m).step_by(2) {
            let two = r + 1 < m;
            let x0 = &x[r * k..(r + 1) * k];
            let x1 = if two {
                &x[(r + 1) * k..(r + 2) * k]
            } else {
                x0
            };
            for c in (c0..c0 + width / 4 * 4).step_by(4) {
                let mut acc = [s.avx._mm256_setzero_si256(); 8];
                for i in (0..k).step_by(16) {
                    let (a0, a1) = (load16(&x0[i..]), load16(&x1[i..]));
                    for j in 0..4 {
                        let b = load16(&w[(c + j) * k + i..]);
                        acc[j] = s
                            .avx2
                            ._mm256_add_epi32(acc[j], s.avx2._mm256_madd_epi16(a0, b));
                        acc[4 + j] = s
                            .avx2
                            ._mm256_add_epi32(acc[4 + j], s.avx2._mm256_madd_epi16(a1, b));
                    }
                }
                for j in 0..4 {
                    dots[r * width + c - c0 + j] = hsum(acc[j]);
                    if two {
                        dots[(r + 1) * width + c - c0 + j] = hsum(acc[4 + j]);
                    }
                }
            }
        }
        super::dots_tail(x, m, w, k, c0, c1, dots);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn every_simd() -> Vec<Simd> {
        let mut all = vec![Simd::Portable];
        for cap in ["avx2", ""] {
            let s = Simd::best(cap);
            if !all.iter().any(|a| a.name() == s.name()) {
                all.push(s);
            }
        }
        all
    }

    #[test]
    fn every_kernel_gives_the_same_integers() {
        // Odd rows, a block width with a tail, inner sizes for each kernel.
        for (m, n, k) in [
            (1, 4, 64),
            (3, 7, 64),
            (13, 1152, 384),
            (5, 9, 1536),
            (2, 6, 16),
            (3, 5, 24),
        ] {
            let limit = input_limit(k);
            let x: Vec<i16> = values(m * k, 1)
                .iter()
                .map(|v| (v * limit) as i16)
                .collect();
            let w: Vec<i16> = values(n * k, 2)
                .iter()
                .map(|v| (v * 127.0) as i16)
                .collect();
            let mut want = vec![0i32; m * n];
            dots_portable(&x, m, &w, k, 0, n, &mut want);
            for simd in every_simd() {
                let mut got = vec![0i32; m * n];
                dot_block(simd, &x, m, &w, k, 0, n, &mut got);
                assert_eq!(got, want, "{} m={m} n={n} k={k}", simd.name());
                // A block that starts inside the matrix.
                let mut part = vec![0i32; m * (n - n / 2)];
                dot_block(simd, &x, m, &w, k, n / 2, n, &mut part);
                for r in 0..m {
                    assert_eq!(
                        part[r * (n - n / 2)..(r + 1) * (n - n / 2)],
                        want[r * n + n / 2..(r + 1) * n]
                    );
                }
            }
        }
    }

    #[test]
    fn a_layer_is_close_to_its_float_product() {
        let (m, n, k) = (7, 96, 384);
        let x = values(m * k, 3);
        let w = values(n * k, 4);
        let b = values(n, 5);
        let layer = Linear::new(&w, &b, n, k).expect("shapes");
        for simd in every_simd() {
            let mut rows = Rows::default();
            Rows::quantize(simd, &x, k, &mut rows);
            let mut y = Vec::new();
            layer.forward(simd, &rows, &mut y);
            assert_eq!(y.len(), m * n);
            let mut worst = 0f32;
            for r in 0..m {
                for c in 0..n {
                    let want: f32 = b[c]
                        + x[r * k..(r + 1) * k]
                            .iter()
                            .zip(&w[c * k..(c + 1) * k])
                            .map(|(a, b)| a * b)
                            .sum::<f32>();
                    worst = worst.max((y[r * n + c] - want).abs());
                }
            }
            // Sums of 384 products of values in [-1, 1] (typical size ~6):
            // rounding each weight by up to 1/254 adds up to an error of
            // ~0.03 (one standard deviation) on a sum.
            assert!(worst < 0.15, "{}: worst error {worst}", simd.name());
        }
    }

    #[test]
    fn rows_round_trip_and_survive_odd_input() {
        let mut rows = Rows::default();
        Rows::quantize(
            Simd::detect(),
            &[0.0, 1.0, -0.5, 0.25, 0.0, 0.0, 0.0, 0.0],
            4,
            &mut rows,
        );
        assert_eq!(rows.len(), 2);
        let s = rows.scale[0];
        for (q, want) in rows.q[..4].iter().zip([0.0, 1.0, -0.5, 0.25]) {
            assert!((s * f32::from(*q) - want).abs() < 1e-3);
        }
        assert_eq!(rows.scale[1], 1.0, "an all-zero row");
        // Not-a-number or infinite inputs give a row of zeros, not a panic.
        Rows::quantize(
            Simd::detect(),
            &[f32::NAN, 1.0, f32::INFINITY, 0.0],
            4,
            &mut rows,
        );
        assert_eq!(rows.len(), 1);
        assert!(rows.q.iter().all(|&q| q == 0));
        // The widest rows still cannot overflow.
        assert!(input_limit(1 << 20) * 127.0 * (1 << 20) as f32 <= i32::MAX as f32);
        assert!(
            Linear::new(&[1.0; 6], &[0.0; 2], 2, 4).is_none(),
            "wrong shape refused"
        );
    }
}
