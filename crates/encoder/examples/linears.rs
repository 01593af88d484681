use encoder::Simd;
use encoder::int8::{Linear, Rows};
use std::time::Instant;
fn main() {
    let simd = Simd::detect();
    let m: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let shapes = [(1152usize, 384usize), (384, 384), (1536, 384), (384, 1536)];
    let mut layers = Vec::new();
    for l in 0..6 {
        for &(n, k) in &shapes {
            let w: Vec<f32> = (0..n * k)
                .map(|i| (((i * 7919 + l) % 255) as f32 - 127.0) / 127.0)
                .collect();
            layers.push(Linear::new(&w, &vec![0.0; n], n, k).unwrap());
        }
    }
    let mut rows = Vec::new();
    for &(_, k) in &shapes {
        let x: Vec<f32> = (0..m * k).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        let mut r = Rows::default();
        Rows::quantize(simd, &x, k, &mut r);
        rows.push(r);
    }
    let mut y = Vec::new();
    let reps = 200;
    // all 24 layers in turn (weights from L3)
    let t = Instant::now();
    for _ in 0..reps {
        for (i, l) in layers.iter().enumerate() {
            l.forward(simd, &rows[i % 4], &mut y);
        }
    }
    let all = t.elapsed().as_secs_f64() / reps as f64;
    let macs: usize = layers.iter().map(|l| l.inputs * l.outputs * m).sum();
    println!(
        "m={m} all 24 layers: {:.3} ms, {:.1} GMAC/s",
        all * 1e3,
        macs as f64 / all / 1e9
    );
    for (i, &(n, k)) in shapes.iter().enumerate() {
        let t = Instant::now();
        for _ in 0..reps * 6 {
            layers[i].forward(simd, &rows[i], &mut y);
        }
        let s = t.elapsed().as_secs_f64() / (reps * 6) as f64;
        println!(
            "  one layer {n}x{k} repeated: {:.3} ms, {:.1} GMAC/s",
            s * 1e3,
            (n * k * m) as f64 / s / 1e9
        );
    }
}
