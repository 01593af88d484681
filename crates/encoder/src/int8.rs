//! Linear layers with int8 weights for the sentence encoder: `y = x·Wᵀ + b`
//! with `W` quantised per output row (symmetric, `[-127, 127]`) and each
//! input row quantised when the layer runs (symmetric, 14 bits, its own
//! scale). The dot products are exact integers, scaled once per output:
//! weight-only rounding keeps the vectors within ~0.1 % of f32 (7-bit
//! inputs lost ~2 % on short texts), and the SIMD kernels run ~20× a
//! scalar loop.
//!
//! The kernels widen the weights to 16 bits as they load them (`pmovsxbw`)
//! and multiply 16-bit pairs into 32-bit sums (`pmaddwd`, fused with the sum
//! into `vpdpwssd` where the CPU has VNNI), through pulp's safe wrappers,
//! chosen at run time: AVX-512 (32 pairs a step), AVX2 (16), or plain Rust
//! elsewhere (which the compiler vectorises itself). A query reads every
//! weight once, so their size is its time: 8-bit weights read half of
//! what widened ones would.

use rayon::prelude::*;

use crate::simd::Simd;

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
            .map(|(row, q)| {
                simd.vectorize(
                    #[inline(always)]
                    || quantize_row(row, q, limit),
                )
            })
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
    /// Row-major `outputs × inputs`: codes in `[-127, 127]`.
    w: Vec<i8>,
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
        let mut w = vec![0i8; weight.len()];
        let mut scale = Vec::with_capacity(outputs);
        for (row, q) in weight.chunks_exact(inputs).zip(w.chunks_exact_mut(inputs)) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 && max.is_finite() {
                max / 127.0
            } else {
                1.0
            };
            for (o, &v) in q.iter_mut().zip(row) {
                *o = round(v / s).clamp(-127.0, 127.0) as i8;
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
        self.w.len() + self.outputs * 8
    }

    /// `y` (`x.len() × outputs`, row-major) from the quantised rows `x`, on
    /// the rayon pool: many rows (a batch) are split by rows, a few (a
    /// query) by columns, in as many parts as there are threads.
    pub fn forward(&self, simd: Simd, x: &Rows, y: &mut Vec<f32>) {
        self.forward_then(simd, x, y, |v| v);
    }

    /// [`Linear::forward`] with `then` applied to every output as it is
    /// written (an activation, without a second pass over `y`).
    pub fn forward_then(
        &self,
        simd: Simd,
        x: &Rows,
        y: &mut Vec<f32>,
        then: impl Fn(f32) -> f32 + Sync + Copy,
    ) {
        let (m, n) = (x.len(), self.outputs);
        y.clear();
        y.resize(m * n, 0.0);
        if m == 0 || x.width != self.inputs {
            return;
        }
        let threads = rayon::current_num_threads().max(1);
        if m >= 16 * threads {
            let rows = m.div_ceil(4 * threads).next_multiple_of(2);
            y.par_chunks_mut(rows * n).enumerate().for_each(|(i, out)| {
                let r0 = i * rows;
                self.part(simd, x, (r0, r0 + out.len() / n), (0, n), out, then);
            });
        } else {
            let cols = n.div_ceil(threads).next_multiple_of(4);
            let parts: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(cols))
                .into_par_iter()
                .map(|i| {
                    let (c0, c1) = (i * cols, ((i + 1) * cols).min(n));
                    let mut out = vec![0f32; m * (c1 - c0)];
                    self.part(simd, x, (0, m), (c0, c1), &mut out, then);
                    (c0, out)
                })
                .collect();
            for (c0, part) in parts {
                let width = part.len() / m;
                for (r, row) in part.chunks_exact(width).enumerate() {
                    y[r * n + c0..r * n + c0 + width].copy_from_slice(row);
                }
            }
        }
    }

    /// Rows `r0..r1` × columns `c0..c1` into `out` (row-major, `c1 − c0`
    /// wide), in blocks of columns whose weights stay in L1.
    fn part(
        &self,
        simd: Simd,
        x: &Rows,
        (r0, r1): (usize, usize),
        (c0, c1): (usize, usize),
        out: &mut [f32],
        then: impl Fn(f32) -> f32 + Copy,
    ) {
        let (k, rows, width) = (self.inputs, r1 - r0, c1 - c0);
        let xq = &x.q[r0 * k..r1 * k];
        let cb = block_columns(k);
        let mut dots = vec![0i32; rows * cb];
        for b0 in (c0..c1).step_by(cb) {
            let b1 = (b0 + cb).min(c1);
            let bw = b1 - b0;
            dot_block(simd, xq, rows, &self.w, k, b0, b1, &mut dots[..rows * bw]);
            let (scale, bias) = (&self.scale[b0..b1], &self.bias[b0..b1]);
            simd.vectorize(
                #[inline(always)]
                || {
                    for (r, d) in dots[..rows * bw].chunks_exact(bw).enumerate() {
                        let sx = x.scale[r0 + r];
                        let o = &mut out[r * width + b0 - c0..r * width + b1 - c0];
                        for (((o, &d), &sw), &b) in o.iter_mut().zip(d).zip(scale).zip(bias) {
                            *o = then(sx * sw * d as f32 + b);
                        }
                    }
                },
            );
        }
    }
}

/// `dots[r][c − c0] = Σₗ x[r][l] · w[c][l]` for rows `0..m`, columns `c0..c1`.
#[allow(clippy::too_many_arguments)]
fn dot_block(
    simd: Simd,
    x: &[i16],
    m: usize,
    w: &[i8],
    k: usize,
    c0: usize,
    c1: usize,
    dots: &mut [i32],
) {
    match simd {
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512Vnni(s, vnni) if k.is_multiple_of(32) => vnni.vectorize(
            #[inline(always)]
            || x86::dots::<32, _>(s, x, m, w, k, c0, c1, dots),
        ),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512(s) if k.is_multiple_of(32) => s.vectorize(
            #[inline(always)]
            || x86::dots::<32, _>(s, x, m, w, k, c0, c1, dots),
        ),
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512Vnni(s, _) | Simd::Avx512(s) if k.is_multiple_of(16) => {
            let s: pulp::x86::V3 = *s;
            s.vectorize(
                #[inline(always)]
                || x86::dots::<16, _>(s, x, m, w, k, c0, c1, dots),
            )
        }
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2(s) if k.is_multiple_of(16) => s.vectorize(
            #[inline(always)]
            || x86::dots::<16, _>(s, x, m, w, k, c0, c1, dots),
        ),
        _ => simd.vectorize(
            #[inline(always)]
            || dots_portable(x, m, w, k, c0, c1, dots),
        ),
    }
}

/// The last `width % 4` columns of a block, which the SIMD kernels leave.
#[inline(always)]
fn dots_tail(x: &[i16], m: usize, w: &[i8], k: usize, c0: usize, c1: usize, dots: &mut [i32]) {
    let width = c1 - c0;
    for c in c0 + width / 4 * 4..c1 {
        for r in 0..m {
            dots[r * width + c - c0] = dot_portable(&x[r * k..(r + 1) * k], &w[c * k..(c + 1) * k]);
        }
    }
}

#[inline(always)]
fn dot_portable(x: &[i16], w: &[i8]) -> i32 {
    x.iter()
        .zip(w)
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum()
}

#[inline(always)]
fn dots_portable(x: &[i16], m: usize, w: &[i8], k: usize, c0: usize, c1: usize, dots: &mut [i32]) {
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
    use core::arch::x86_64::{__m128i, __m256i, __m512i};
    use pulp::bytemuck;
    use pulp::x86::{V3, V4};

    /// What the kernel needs of one vector width: `N` 16-bit lanes.
    pub trait Lanes<const N: usize>: Copy {
        type V: Copy;
        fn zero(self) -> Self::V;
        fn load(self, x: &[i16; N]) -> Self::V;
        /// `N` weights, widened to 16 bits as they load.
        fn widen(self, w: &[i8; N]) -> Self::V;
        /// `acc` plus the products of `a` and `b`, summed in pairs.
        fn madd(self, acc: Self::V, a: Self::V, b: Self::V) -> Self::V;
        fn sum(self, v: Self::V) -> i32;
    }

    impl Lanes<32> for V4 {
        type V = __m512i;
        #[inline(always)]
        fn zero(self) -> __m512i {
            self.avx512f._mm512_setzero_si512()
        }
        #[inline(always)]
        fn load(self, x: &[i16; 32]) -> __m512i {
            bytemuck::cast(*x)
        }
        #[inline(always)]
        fn widen(self, w: &[i8; 32]) -> __m512i {
            self.avx512bw
                ._mm512_cvtepi8_epi16(bytemuck::cast::<_, __m256i>(*w))
        }
        #[inline(always)]
        fn madd(self, acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
            self.avx512f
                ._mm512_add_epi32(acc, self.avx512bw._mm512_madd_epi16(a, b))
        }
        #[inline(always)]
        fn sum(self, v: __m512i) -> i32 {
            self.avx512f._mm512_reduce_add_epi32(v)
        }
    }

    impl Lanes<16> for V3 {
        type V = __m256i;
        #[inline(always)]
        fn zero(self) -> __m256i {
            self.avx._mm256_setzero_si256()
        }
        #[inline(always)]
        fn load(self, x: &[i16; 16]) -> __m256i {
            bytemuck::cast(*x)
        }
        #[inline(always)]
        fn widen(self, w: &[i8; 16]) -> __m256i {
            self.avx2
                ._mm256_cvtepi8_epi16(bytemuck::cast::<_, __m128i>(*w))
        }
        #[inline(always)]
        fn madd(self, acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
            self.avx2
                ._mm256_add_epi32(acc, self.avx2._mm256_madd_epi16(a, b))
        }
        #[inline(always)]
        fn sum(self, v: __m256i) -> i32 {
            bytemuck::cast::<_, [i32; 8]>(v).iter().sum()
        }
    }

    /// Two rows × four columns at a time; `k` a multiple of `N`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub fn dots<const N: usize, L: Lanes<N>>(
        s: L,
        x: &[i16],
        m: usize,
        w: &[i8],
        k: usize,
        c0: usize,
        c1: usize,
        dots: &mut [i32],
    ) {
        let width = c1 - c0;
        let row = |i: usize| x[i * k..(i + 1) * k].as_chunks::<N>().0;
        let col = |i: usize| w[i * k..(i + 1) * k].as_chunks::<N>().0;
        for r in (0..m).step_by(2) {
            let two = r + 1 < m;
            let (x0, x1) = (row(r), row(if two { r + 1 } else { r }));
            for c in (c0..c0 + width / 4 * 4).step_by(4) {
                let (w0, w1, w2, w3) = (col(c), col(c + 1), col(c + 2), col(c + 3));
                let mut acc = [s.zero(); 8];
                let steps = x0.iter().zip(x1).zip(w0).zip(w1).zip(w2).zip(w3);
                for (((((a0, a1), b0), b1), b2), b3) in steps {
                    let (a0, a1) = (s.load(a0), s.load(a1));
                    let b = [s.widen(b0), s.widen(b1), s.widen(b2), s.widen(b3)];
                    for (j, b) in b.into_iter().enumerate() {
                        acc[j] = s.madd(acc[j], a0, b);
                        acc[4 + j] = s.madd(acc[4 + j], a1, b);
                    }
                }
                for j in 0..4 {
                    dots[r * width + c - c0 + j] = s.sum(acc[j]);
                    if two {
                        dots[(r + 1) * width + c - c0 + j] = s.sum(acc[4 + j]);
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
    use crate::simd::SimdCap;

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
        for cap in SimdCap::ALL {
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
            let w: Vec<i8> = values(n * k, 2).iter().map(|v| (v * 127.0) as i8).collect();
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
            Simd::best(SimdCap::Best),
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
            Simd::best(SimdCap::Best),
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
