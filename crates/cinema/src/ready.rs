//! `cinema ready SERVICE`: exits 0 when an instance of SERVICE answers the
//! NATS services API's ping, 1 (with one line saying why) otherwise. The
//! containers' healthchecks: a service is ready when it answers on the bus
//! (clip-selector: and has loaded its library).

use std::time::Duration;

use anyhow::{Context, bail};

#[derive(clap::Args, Debug)]
pub struct ReadyArgs {
    /// The service's name on the bus (`clip-selector`, `stt`, …).
    pub service: String,
    /// How long to wait for its answer, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub wait_ms: u64,
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

pub async fn run(args: ReadyArgs) -> anyhow::Result<()> {
    let client = bus::connect_options("cinema-ready", &args.nats_url)
        .await?
        .connect(bus::server_addrs(&args.nats_url)?)
        .await
        .with_context(|| {
            format!(
                "cannot connect to NATS at {}",
                plumbing::redact(&args.nats_url)
            )
        })?;
    let wait = Duration::from_millis(args.wait_ms);
    let deadline = tokio::time::Instant::now() + wait;
    // A service may answer a ping a moment after another's: ask until the
    // deadline, a short round at a time.
    loop {
        let seen = bus::service::ping_all(&client, Duration::from_millis(300)).await?;
        if let Some(i) = seen.iter().find(|i| i.name == args.service) {
            if args.service == bus::names::service::CLIP_SELECTOR {
                // It answers while its first ingest runs; ready once loaded.
                let films: wire::v1::FilmList = bus::Bus::new(client.clone())
                    .request(
                        &bus::endpoints::clips::FILMS,
                        &wire::v1::ListFilmsRequest {},
                    )
                    .await?;
                if films.loading {
                    let ingest = films.ingest.unwrap_or_default();
                    bail!(
                        "clip-selector is ingesting the library ({} of {} films)",
                        ingest.progress_done,
                        ingest.progress_todo
                    );
                }
            }
            println!("{} is ready ({} {})", i.name, i.id, i.version);
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let names: Vec<&str> = seen.iter().map(|i| i.name.as_str()).collect();
            bail!(
                "{} does not answer on the bus (answering: {})",
                args.service,
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            );
        }
    }
}
