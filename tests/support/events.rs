//! What happened on the bus: the events stream's record of a subject, and
//! the next matching message of a subscription.

use std::time::Duration;

/// Every message of `subject` kept in the events stream, decoded.
pub async fn recorded<M: wire::Message + wire::Name + Default>(
    bus: &bus::Bus,
    subject: String,
) -> Vec<M> {
    use futures::StreamExt;
    let stream = bus
        .jetstream()
        .get_stream(bus::names::EVENTS_STREAM)
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(bus::async_nats::jetstream::consumer::pull::Config {
            filter_subject: subject,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(m)) = batch.next().await {
        if let Ok(v) = bus::decode_message::<M>(&m) {
            out.push(v);
        }
    }
    out
}

/// Waits for the next message on `sub` that decodes as `M` and passes `keep`.
pub async fn next<M: wire::Message + wire::Name + Default>(
    sub: &mut bus::async_nats::Subscriber,
    what: &str,
    keep: impl Fn(&M) -> bool,
) -> M {
    next_within(sub, what, Duration::from_secs(30), keep).await
}

/// [`next`] with its own patience (slow work on a loaded 2-core machine).
pub async fn next_within<M: wire::Message + wire::Name + Default>(
    sub: &mut bus::async_nats::Subscriber,
    what: &str,
    within: Duration,
    keep: impl Fn(&M) -> bool,
) -> M {
    use futures::StreamExt;
    tokio::time::timeout(within, async {
        loop {
            let msg = sub.next().await.expect("subscription open");
            if let Ok(m) = bus::decode_message::<M>(&msg)
                && keep(&m)
            {
                return m;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}
