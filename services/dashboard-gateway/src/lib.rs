pub async fn run(_c: Config, _b: bus::Bus, _s: tokio_util::sync::CancellationToken) -> Result<(), bus::Error> { Ok(()) }
#[derive(Default, serde::Serialize, serde::Deserialize)] pub struct Config { nats_url: String }
impl plumbing::Settings for Config { const ENV_PREFIX: &str = "X"; fn nats_url(&self) -> &str { &self.nats_url } }
