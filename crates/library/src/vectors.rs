//! The vector index: nearest subtitle lines to a query embedding.
//!
//! Two quantised copies of every vector, both scanned without indirection:
//!
//! 1. **bits** — one bit per dimension, set where the component is above that
//!    dimension's mean over the library (48 bytes a line). Every query scans
//!    all of them by Hamming distance: 4.8 MB for 100,000 lines.
//! 2. **int8** — each vector scaled so its largest component is ±127 (384
//!    bytes and one `f32` scale a line). The closest candidates by Hamming
//!    distance are re-scored by their int8 dot product with the query, which
//!    is within ~1 % of the float cosine.
//!
//! Filters are applied to candidates before re-scoring; when too few pass,
//! the candidate set grows (×4) until enough pass or every line was a
//! candidate, so a filter never loses a match the scan would find. Results
//! are deterministic: ties go to the lower row. ARCHITECTURE.md says why this
//! and not a float scan or a graph index.

use encoder::Simd;

/// Candidates re-scored per query (at least; more when filters reject).
pub const RESCORE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{len} floats are not whole {dim}-dimensional vectors")]
    Shape { len: usize, dim: usize },
    #[error("dimension must be a positive multiple of 64, got {0}")]
    Dimension(usize),
}

/// Quantised vectors, one per row, searchable by cosine similarity.
#[derive(Debug, Clone)]
pub struct VectorIndex {
    dim: usize,
    len: usize,
    /// Per-dimension mean: the bit threshold.
    mean: Vec<f32>,
    /// `dim / 64` words per row.
    bits: Vec<u64>,
    /// `dim` codes per row.
    codes: Vec<i8>,
    /// Per-row scale: component ≈ code × scale.
    scales: Vec<f32>,
    /// The instruction set the scan is compiled for (`popcnt`, wide
    /// integer multiplies), chosen at run time.
    simd: Simd,
}

/// One hit: the row and its (approximate) cosine similarity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: usize,
    pub score: f32,
}

impl VectorIndex {
    /// Builds the index from `vectors`, `dim` floats per row, rows in order
    /// (normalised vectors, as [`crate::embed::Embedder::embed`] gives).
    pub fn from_flat(vectors: &[f32], dim: usize, simd: Simd) -> Result<VectorIndex, Error> {
        if dim == 0 || !dim.is_multiple_of(64) {
            return Err(Error::Dimension(dim));
        }
        if !vectors.len().is_multiple_of(dim) {
            return Err(Error::Shape {
                len: vectors.len(),
                dim,
            });
        }
        let len = vectors.len() / dim;
        let mut mean = vec![0f64; dim];
        for row in vectors.chunks_exact(dim) {
            for (m, &x) in mean.iter_mut().zip(row) {
                *m += f64::from(x);
            }
        }
        let mean: Vec<f32> = mean
            .into_iter()
            .map(|m| {
                if len > 0 {
                    (m / len as f64) as f32
                } else {
                    0.0
                }
            })
            .collect();
        let words = dim / 64;
        let mut bits = Vec::with_capacity(len * words);
        let mut codes = Vec::with_capacity(len * dim);
        let mut scales = Vec::with_capacity(len);
        for row in vectors.chunks_exact(dim) {
            bits.extend(sign_bits(row, &mean));
            let (c, s) = quantize(row);
            codes.extend(c);
            scales.push(s);
        }
        Ok(VectorIndex {
            dim,
            len,
            mean,
            bits,
            codes,
            scales,
            simd,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held for the vectors (what grows with the library).
    pub fn bytes(&self) -> usize {
        self.bits.len() * 8 + self.codes.len() + self.scales.len() * 4 + self.mean.len() * 4
    }

    /// The `k` rows most similar to `query` among those `accept` passes,
    /// best first. `query` must have [`VectorIndex::dim`] components.
    pub fn search(&self, query: &[f32], k: usize, accept: impl Fn(usize) -> bool) -> Vec<Hit> {
        if k == 0 || self.len == 0 || query.len() != self.dim {
            return Vec::new();
        }
        let qbits = sign_bits(query, &self.mean);
        let words = self.dim / 64;
        let distances: Vec<u16> = self.simd.vectorize(
            #[inline(always)]
            || {
                self.bits
                    .chunks_exact(words)
                    .map(|row| {
                        row.iter()
                            .zip(&qbits)
                            .map(|(a, b)| (a ^ b).count_ones() as u16)
                            .sum()
                    })
                    .collect()
            },
        );
        let (qcodes, qscale) = quantize(query);
        let qwide: Vec<i16> = qcodes.iter().map(|&c| i16::from(c)).collect();
        let mut fetch = RESCORE.max(4 * k);
        loop {
            let candidates = closest(&distances, fetch, self.dim);
            let accepted: Vec<usize> = candidates.into_iter().filter(|&row| accept(row)).collect();
            let mut hits = self.rescore_all(&accepted, &qwide, qscale);
            if hits.len() >= k || fetch >= self.len {
                hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
                hits.truncate(k);
                return hits;
            }
            fetch = fetch.saturating_mul(4);
        }
    }

    /// Every row scored by its int8 dot product: the reference the bit scan
    /// approximates (benchmarks measure recall against it).
    pub fn search_exhaustive(&self, query: &[f32], k: usize) -> Vec<Hit> {
        if query.len() != self.dim {
            return Vec::new();
        }
        let (qcodes, qscale) = quantize(query);
        let qwide: Vec<i16> = qcodes.iter().map(|&c| i16::from(c)).collect();
        let rows: Vec<usize> = (0..self.len).collect();
        let mut hits = self.rescore_all(&rows, &qwide, qscale);
        hits.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
        hits.truncate(k);
        hits
    }

    /// The (approximate) cosine of `query` with each of `rows`, in order;
    /// rows out of range score 0.
    pub fn similarities(&self, query: &[f32], rows: &[usize]) -> Vec<f32> {
        if query.len() != self.dim {
            return vec![0.0; rows.len()];
        }
        let (qcodes, qscale) = quantize(query);
        let qwide: Vec<i16> = qcodes.iter().map(|&c| i16::from(c)).collect();
        let known: Vec<usize> = rows.iter().copied().filter(|&r| r < self.len).collect();
        let mut scores = self
            .rescore_all(&known, &qwide, qscale)
            .into_iter()
            .map(|h| h.score);
        rows.iter()
            .map(|&r| {
                if r < self.len {
                    scores.next().unwrap_or(0.0)
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// `row · query` in int8 for each of `rows`, scaled back to a cosine.
    fn rescore_all(&self, rows: &[usize], qwide: &[i16], qscale: f32) -> Vec<Hit> {
        self.simd.vectorize(
            #[inline(always)]
            || {
                rows.iter()
                    .map(|&row| {
                        let codes = &self.codes[row * self.dim..(row + 1) * self.dim];
                        Hit {
                            row,
                            score: dot_i8(codes, qwide) as f32 * self.scales[row] * qscale,
                        }
                    })
                    .collect()
            },
        )
    }
}

/// The `want` rows with the smallest distances (all of them when fewer), in
/// row order: a histogram of distances finds the cut-off, ties at it go to
/// the lower rows.
fn closest(distances: &[u16], want: usize, dim: usize) -> Vec<usize> {
    if want >= distances.len() {
        return (0..distances.len()).collect();
    }
    let mut histogram = vec![0usize; dim + 1];
    for &d in distances {
        histogram[usize::from(d)] += 1;
    }
    let mut below = 0;
    let mut cut = 0;
    for (d, &count) in histogram.iter().enumerate() {
        if below + count >= want {
            cut = d;
            break;
        }
        below += count;
    }
    let mut at_cut = want - below;
    let mut rows = Vec::with_capacity(want);
    for (row, &d) in distances.iter().enumerate() {
        let d = usize::from(d);
        if d < cut {
            rows.push(row);
        } else if d == cut && at_cut > 0 {
            rows.push(row);
            at_cut -= 1;
        }
    }
    rows
}

/// One bit per component: set where it is above the mean.
fn sign_bits(v: &[f32], mean: &[f32]) -> Vec<u64> {
    v.chunks_exact(64)
        .zip(mean.chunks_exact(64))
        .map(|(xs, ms)| {
            xs.iter()
                .zip(ms)
                .enumerate()
                .fold(0u64, |w, (i, (x, m))| if x > m { w | (1 << i) } else { w })
        })
        .collect()
}

/// Codes in −127..=127 and the scale that maps them back.
fn quantize(v: &[f32]) -> (Vec<i8>, f32) {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        return (vec![0; v.len()], 0.0);
    }
    let scale = max / 127.0;
    let codes = v
        .iter()
        .map(|x| (x / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (codes, scale)
}

/// Integer dot product in 16-wide lanes, a shape the compiler vectorises.
#[inline(always)]
fn dot_i8(a: &[i8], b: &[i16]) -> i32 {
    let mut acc = [0i32; 16];
    for (ca, cb) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += i32::from(ca[i]) * i32::from(cb[i]);
        }
    }
    let tail: i32 = a
        .chunks_exact(16)
        .remainder()
        .iter()
        .zip(b.chunks_exact(16).remainder())
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    acc.iter().sum::<i32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic pseudo-random unit vector.
    fn any() -> Simd {
        Simd::best(encoder::SimdCap::Best)
    }

    fn unit(seed: u64, dim: usize) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let v: Vec<f32> = (0..dim)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        crate::embed::normalized(v)
    }

    fn index(n: usize) -> (VectorIndex, Vec<Vec<f32>>) {
        let rows: Vec<Vec<f32>> = (0..n as u64).map(|i| unit(i + 1, 128)).collect();
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        (
            VectorIndex::from_flat(&flat, 128, any()).expect("index"),
            rows,
        )
    }

    #[test]
    fn finds_each_row_as_its_own_nearest() {
        let (ix, rows) = index(3000);
        for probe in [0, 17, 1500, 2999] {
            let hits = ix.search(&rows[probe], 3, |_| true);
            assert_eq!(hits[0].row, probe);
            assert!((hits[0].score - 1.0).abs() < 0.02, "{:?}", hits[0]);
            assert!(hits[0].score >= hits[1].score && hits[1].score >= hits[2].score);
        }
    }

    #[test]
    fn agrees_with_the_exhaustive_scan_on_a_near_query() {
        let (ix, rows) = index(5000);
        // A query between two rows: both must come first, as in the full scan.
        let q = crate::embed::normalized(
            rows[10]
                .iter()
                .zip(&rows[4000])
                .map(|(a, b)| a + b)
                .collect(),
        );
        let fast: Vec<usize> = ix.search(&q, 2, |_| true).iter().map(|h| h.row).collect();
        let full: Vec<usize> = ix.search_exhaustive(&q, 2).iter().map(|h| h.row).collect();
        assert_eq!(fast, full);
        assert_eq!(
            {
                let mut f = fast.clone();
                f.sort();
                f
            },
            vec![10, 4000]
        );
    }

    #[test]
    fn filters_hold_even_when_they_reject_almost_everything() {
        let (ix, rows) = index(5000);
        // Only rows ≡ 3 (mod 1000) pass: far fewer than the first candidate set.
        let hits = ix.search(&rows[0], 4, |r| r % 1000 == 3);
        let got: Vec<usize> = hits.iter().map(|h| h.row).collect();
        assert_eq!(got.len(), 4);
        assert!(got.iter().all(|r| r % 1000 == 3), "{got:?}");
        let mut want: Vec<usize> = ix
            .search_exhaustive(&rows[0], 5000)
            .into_iter()
            .map(|h| h.row)
            .filter(|r| r % 1000 == 3)
            .collect();
        want.truncate(4);
        assert_eq!(got, want);
        assert!(ix.search(&rows[0], 4, |_| false).is_empty());
    }

    #[test]
    fn deterministic_and_validated() {
        let (ix, rows) = index(2000);
        let a = ix.search(&rows[5], 10, |r| r != 5);
        let b = ix.search(&rows[5], 10, |r| r != 5);
        assert_eq!(a, b);
        assert!(a.iter().all(|h| h.row != 5));
        assert!(matches!(
            VectorIndex::from_flat(&[0.0; 130], 128, any()),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            VectorIndex::from_flat(&[], 100, any()),
            Err(Error::Dimension(100))
        ));
        let empty = VectorIndex::from_flat(&[], 128, any()).expect("empty index");
        assert!(empty.search(&rows[0], 3, |_| true).is_empty());
        assert_eq!(ix.bytes(), 2000 * (16 + 128 + 4) + 128 * 4);
    }

    #[test]
    fn closest_keeps_the_smallest_and_breaks_ties_by_row() {
        assert_eq!(closest(&[5, 1, 3, 1, 0, 3], 3, 8), vec![1, 3, 4]);
        assert_eq!(closest(&[2, 2, 2, 2], 2, 8), vec![0, 1]);
        assert_eq!(closest(&[2, 1], 5, 8), vec![0, 1]);
    }
}
