fn main() {
    let dir = std::env::args().nth(1).expect("usage: demo DIR");
    let t = std::time::Instant::now();
    let films = synth::demo_library(std::path::Path::new(&dir)).expect("demo library");
    eprintln!("{} films in {:?}", films.len(), t.elapsed());
}
