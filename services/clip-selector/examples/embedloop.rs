fn main() {
    let dir = testkit::embedding_model();
    let e = clip_selector::embed::Embedder::load(&dir).unwrap();
    let q = "the old man never came back before dawn, and my brother wants to see you";
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let t = std::time::Instant::now();
    for _ in 0..n {
        e.embed_one(q).unwrap();
    }
    println!(
        "{:.3} ms per query",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
}
