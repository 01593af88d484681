use std::time::Duration;

use testkit::NatsServer;

#[tokio::test]
async fn server_starts_restarts_and_keeps_its_store() {
    let mut server = NatsServer::start();
    let bus = server.bus("testkit").await;
    let kv = bus.kv(bus::names::STATUS_BUCKET).await.unwrap();
    kv.put("k", "v".into()).await.unwrap();
    let port = server.port();
    server.restart();
    assert_eq!(server.port(), port);
    let bus = testkit::eventually(Duration::from_secs(10), "reconnect", async || {
        bus::Bus::connect(&server.url(), "again").await.ok()
    })
    .await;
    let kv = bus.kv(bus::names::STATUS_BUCKET).await.unwrap();
    assert_eq!(kv.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}
