//! The director against real services: the `openai` mode with a local double
//! of the chat-completions API (single and two-step flows, misbehaving
//! models), and turn order of one session across two llm replicas.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::subjects::SessionEvent;
use serde_json::Value;
use testkit::openai::{OpenAiDouble, Reply};
use tests::{DirectorRig, next, next_within};
use wire::v1::conversation_event::Kind;
use wire::v1::{ConversationEvent, PlayCommand};

fn openai_env<'a>(double: &'a OpenAiDouble, flow: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CINEMA_DIRECTOR", "openai"),
        ("OPENAI_BASE_URL", double.url()),
        ("OPENAI_API_KEY", "test-key"),
        ("LLM_MODEL", "test-model"),
        ("CINEMA_LLM_FLOW", flow),
        ("CINEMA_LLM_TIMEOUT_MS", "1500"),
    ]
}

/// Everything the director said about one turn, up to its latency record.
struct Turn {
    play: PlayCommand,
    events: Vec<ConversationEvent>,
}

impl Turn {
    fn errors(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| match &e.kind {
                Some(Kind::Error(err)) => Some(err.message.clone()),
                _ => None,
            })
            .collect()
    }

    fn reasoning(&self) -> String {
        self.events
            .iter()
            .find_map(|e| match &e.kind {
                Some(Kind::Reasoning(r)) => Some(r.text.clone()),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn played(&self) -> wire::v1::ClipPlayed {
        self.events
            .iter()
            .find_map(|e| match &e.kind {
                Some(Kind::ClipPlayed(p)) if !p.greeting => Some(p.clone()),
                _ => None,
            })
            .expect("a clip played event")
    }
}

struct Session {
    sid: String,
    plays: bus::async_nats::Subscriber,
    events: bus::async_nats::Subscriber,
    said: u32,
}

impl Session {
    /// Joins and waits for the greeting.
    async fn open(rig: &DirectorRig, sid: &str) -> (Session, PlayCommand) {
        let mut s = Session {
            sid: sid.into(),
            plays: rig.subscribe(sid, SessionEvent::Play).await,
            events: rig.subscribe(sid, SessionEvent::Conversation).await,
            said: 0,
        };
        rig.join(sid).await;
        let greeting = next::<PlayCommand>(&mut s.plays, "the greeting", |p| p.greeting).await;
        next::<ConversationEvent>(
            &mut s.events,
            "the greeting played",
            |e| matches!(&e.kind, Some(Kind::ClipPlayed(p)) if p.greeting),
        )
        .await;
        (s, greeting)
    }

    /// Says `text` and collects the turn.
    async fn say(&mut self, rig: &DirectorRig, text: &str) -> Turn {
        self.said += 1;
        rig.say(&self.sid, &format!("u{}", self.said), text).await;
        let play = next::<PlayCommand>(&mut self.plays, text, |p| !p.greeting).await;
        let mut events = Vec::new();
        loop {
            let e =
                next::<ConversationEvent>(&mut self.events, "the turn's events", |_| true).await;
            let last = matches!(e.kind, Some(Kind::Latency(_)));
            events.push(e);
            if last {
                break;
            }
        }
        Turn { play, events }
    }
}

fn tool_names(request: &Value) -> Vec<String> {
    request["tools"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(|t| t["function"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The text of every message of `role` in a request.
fn messages(request: &Value, role: &str) -> Vec<String> {
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == role)
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn single_flow_asks_the_model_once_with_the_options() {
    let double = OpenAiDouble::start().await;
    let rig = DirectorRig::start(&openai_env(&double, "single"), 1).await;
    let (mut session, _greeting) = Session::open(&rig, "s-single").await;
    // The greeting is the retrieval director's: no model request.
    assert!(double.requests().is_empty(), "{:?}", double.requests());

    let turn = session.say(&rig, "Where is the station?").await;
    let requests = double.requests();
    assert_eq!(requests.len(), 1, "one model round trip per turn");
    let r = &requests[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.auth, "Bearer test-key");
    assert_eq!(r.body["model"], "test-model");
    assert_eq!(tool_names(&r.body), ["play_video_by_params"]);
    assert_eq!(r.body["tool_choice"], "required");
    assert!(messages(&r.body, "system")[0].contains("mute"));
    let asked = messages(&r.body, "user").pop().unwrap();
    assert!(asked.contains("Where is the station?"), "{asked}");
    // The options went to the model by id; the double plays the first one,
    // which answer search ranked first: the line that follows the question.
    assert!(asked.contains(&turn.play.clip_id), "{asked}");
    // Each answer comes with how well the library judges it fits, and why.
    assert!(asked.contains("\"fit\":"), "{asked}");
    assert!(asked.contains("its cue shares"), "{asked}");
    let played = turn.played();
    assert_eq!(
        played.clip.as_ref().unwrap().caption,
        "The station is down the road, past the bakery."
    );
    assert_eq!(turn.reasoning(), "the first option answers best");
    assert!(turn.errors().is_empty(), "{:?}", turn.errors());
    let latency = turn
        .events
        .iter()
        .find_map(|e| match &e.kind {
            Some(Kind::Latency(l)) => Some(*l),
            _ => None,
        })
        .unwrap();
    assert!(latency.model_ms > 0 && latency.total_ms >= latency.model_ms);

    // The next turn carries the conversation so far.
    let turn2 = session.say(&rig, "Thank you, goodbye").await;
    assert_ne!(turn2.play.clip_id, turn.play.clip_id, "no repeats");
    let r2 = &double.requests()[1];
    let users = messages(&r2.body, "user");
    assert!(users[0].contains("Where is the station?"), "{users:?}");
    let assistants = messages(&r2.body, "assistant");
    assert!(
        assistants.iter().any(|a| a.contains("past the bakery")),
        "{assistants:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_step_flow_lets_the_model_search_then_play() {
    let double = OpenAiDouble::start().await;
    let rig = DirectorRig::start(&openai_env(&double, "two-step"), 1).await;
    let (mut session, _) = Session::open(&rig, "s-two-step").await;

    let turn = session.say(&rig, "Do you have anything to eat?").await;
    let requests = double.requests();
    assert_eq!(requests.len(), 2, "search, then play");
    assert_eq!(
        tool_names(&requests[0].body),
        ["search_video_clips", "play_video_by_params"]
    );
    // The second request carries the model's search call and its result.
    let second = requests[1].body["messages"].as_array().unwrap();
    let call = second
        .iter()
        .find(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .expect("the search call is sent back");
    assert_eq!(
        call["tool_calls"][0]["function"]["name"],
        "search_video_clips"
    );
    let result = second.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(result["tool_call_id"], call["tool_calls"][0]["id"]);
    let options: Value = serde_json::from_str(result["content"].as_str().unwrap()).unwrap();
    let first = &options["options"][0];
    for field in [
        "clip_id",
        "caption",
        "description",
        "film",
        "start",
        "end",
        "duration",
    ] {
        assert!(!first[field].is_null(), "option lacks {field}: {first}");
    }
    assert_eq!(turn.play.clip_id, first["clip_id"].as_str().unwrap());
    let search = turn
        .events
        .iter()
        .find_map(|e| match &e.kind {
            Some(Kind::Search(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap();
    assert!(search.query.contains("anything to eat"), "{search:?}");
    assert!(turn.errors().is_empty(), "{:?}", turn.errors());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_misbehaving_model_never_leaves_the_visitor_without_a_clip() {
    let double = OpenAiDouble::start().await;
    let rig = DirectorRig::start(&openai_env(&double, "single"), 1).await;
    let (mut session, _) = Session::open(&rig, "s-robust").await;
    let call = |name: &str, args: &str| Reply::ToolCall {
        name: name.into(),
        arguments: args.into(),
    };
    // The model that hangs comes first, while every line still has options
    // to show it (later lines may find theirs all played).
    let cases: Vec<(Reply, &str)> = vec![
        (Reply::Hang, "did not answer within 1500 ms"),
        (Reply::Status(429, "Rate limit reached".into()), "HTTP 429"),
        (Reply::Status(503, "overloaded".into()), "HTTP 503"),
        (
            Reply::Malformed("<html>bad gateway</html>".into()),
            "unreadable response",
        ),
        (
            Reply::Content("I'm sorry, I can't help with that.".into()),
            "without choosing a clip",
        ),
        (
            call("play_video_by_params", r#"{"clip_id": "no-such-clip"}"#),
            "not among the options",
        ),
        (
            call(
                "play_video_by_params",
                r#"{"video_file": "/etc/passwd", "start": 0, "end": 3}"#,
            ),
            "only clip ids are played",
        ),
        (
            call("play_video_by_params", r#"{"reasoning": "forgot the id"}"#),
            "needs a clip_id",
        ),
        (
            call("play_video_by_params", "{not json"),
            "not a JSON object",
        ),
        (call("delete_everything", "{}"), "unknown tool"),
        (
            Reply::Refusal("I can't assist with that.".into()),
            "the model refused",
        ),
    ];
    let lines = [
        "Is anybody home?",
        "It has rained all day.",
        "I lost my way in the forest.",
        "Do you have anything to eat?",
        "You are very kind.",
        "Hello there, traveller!",
        "Good morning. Can you help me?",
        "Where is the station?",
        "Thank you very much.",
        "Sit by the fire and tell me everything.",
        "Nobody finds this house by chance.",
    ];
    // A new session every four turns: in a library of fifteen lines, a
    // session that has played most of them has nothing left to show a model.
    let mut played = Vec::new();
    for (i, ((reply, expected), line)) in cases.into_iter().zip(lines).enumerate() {
        if i > 0 && i % 4 == 0 {
            session = Session::open(&rig, &format!("s-robust-{i}")).await.0;
        }
        double.push(reply);
        let turn = session.say(&rig, line).await;
        let errors = turn.errors();
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{line}: expected an error with {expected:?}, got {errors:?} in {:?}; model saw {:?}",
            turn.events,
            double.requests().last().map(|r| &r.body)
        );
        assert!(
            errors.iter().all(|e| e.contains("retrieval director")),
            "{errors:?}"
        );
        assert!(!turn.play.clip_id.is_empty());
        played.push((session.sid.clone(), turn.play.clip_id));
    }
    let mut unique = played.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        played.len(),
        "no repeats in a session: {played:?}"
    );

    // A small model writing its tool call as JSON in the text is understood.
    let (mut session, greeting) = Session::open(&rig, "s-json-in-text").await;
    let options = llm::search_with_limit(
        &rig.bus,
        "Where is the station?",
        wire::v1::SearchMode::Answer,
        5,
        &[greeting.clip_id],
    )
    .await
    .unwrap();
    let second = &options[1].id;
    double.push(Reply::Content(format!(
        "Sure! ```json\n{{\"name\": \"play_video_by_params\", \"arguments\": {{\"clip_id\": \"{second}\", \"reasoning\": \"from text\"}}}}\n```"
    )));
    let turn = session.say(&rig, "Where is the station?").await;
    assert!(turn.errors().is_empty(), "{:?}", turn.errors());
    assert_eq!(turn.reasoning(), "from text");
    assert_eq!(&turn.play.clip_id, second);
}

#[tokio::test(flavor = "multi_thread")]
async fn turns_of_one_session_run_in_order_across_replicas() {
    let double = OpenAiDouble::start().await;
    // A slow model widens the window in which two replicas could overlap.
    double.set_delay(Duration::from_millis(150));
    let rig = DirectorRig::start(&openai_env(&double, "single"), 2).await;
    let (mut session, _) = Session::open(&rig, "s-order").await;
    let lines = [
        "Is anybody home?",
        "It has rained all day.",
        "I lost my way in the forest.",
        "Do you have anything to eat?",
        "You are very kind.",
        "Where is the station?",
    ];
    // All at once, as a burst of transcripts.
    for (i, line) in lines.iter().enumerate() {
        rig.say("s-order", &format!("burst{i}"), line).await;
    }
    let mut user_lines = Vec::new();
    let mut played_turns = Vec::new();
    while played_turns.len() < lines.len() {
        let e = next::<ConversationEvent>(&mut session.events, "every turn played", |_| true).await;
        match e.kind {
            Some(Kind::UserLine(u)) => user_lines.push((e.turn, u.text)),
            Some(Kind::ClipPlayed(p)) if !p.greeting => played_turns.push(e.turn),
            _ => {}
        }
    }
    let expected: Vec<(u32, String)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u32 + 1, l.to_string()))
        .collect();
    assert_eq!(user_lines, expected, "one turn at a time, in order");
    assert_eq!(played_turns, (1..=lines.len() as u32).collect::<Vec<_>>());
    // Every model request saw the previous turns: none overlapped.
    let requests = double.requests();
    assert_eq!(requests.len(), lines.len());
    for (i, r) in requests.iter().enumerate() {
        let users = messages(&r.body, "user");
        assert_eq!(users.len(), i + 1, "request {i} had {users:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_retrieval_director_replays_a_conversation_the_same_way_given_a_seed() {
    let env = [("CINEMA_SEED", "7"), ("CINEMA_LLM_VARIETY", "3")];
    let rig = DirectorRig::start(&env, 1).await;
    let lines = [
        "Is anybody home?",
        "It has rained all day.",
        "Where is the station?",
        "Do you have anything to eat?",
        "You are very kind.",
    ];
    let mut runs = Vec::new();
    let mut not_first = 0;
    for sid in ["s-seed-a", "s-seed-b"] {
        let (mut session, greeting) = Session::open(&rig, sid).await;
        let mut clips = vec![greeting.clip_id];
        for line in lines {
            let turn = session.say(&rig, line).await;
            let first = turn
                .events
                .iter()
                .find_map(|e| match &e.kind {
                    Some(Kind::Options(o)) => o.options.first().map(|c| c.id.clone()),
                    _ => None,
                })
                .unwrap();
            not_first += usize::from(first != turn.play.clip_id);
            clips.push(turn.play.clip_id);
        }
        runs.push(clips);
    }
    assert_eq!(
        runs[0], runs[1],
        "the same seed and lines give the same clips"
    );
    assert!(
        not_first > 0,
        "variety 3 chose beyond the best option sometimes"
    );
}

/// A visitor who speaks while the library is not there yet (clip-selector
/// down or still starting) is answered once it is: the greeting and the
/// turn are tried again with backoff, not dropped. A part that never comes
/// back is given up after `retry_for_s`, with the reason in the record.
#[tokio::test(flavor = "multi_thread")]
async fn a_turn_waits_out_a_library_that_is_not_there_yet() {
    let rig = DirectorRig::start_without_library(&[]).await;
    let mut plays = rig.subscribe("late-1", SessionEvent::Play).await;
    // The director's searches, seen (and left unanswered) while there is
    // no library.
    let mut searches = rig
        .bus
        .client()
        .subscribe(bus::subjects::clips::SEARCH)
        .await
        .unwrap();
    rig.join("late-1").await;
    rig.say("late-1", "u1", "Where is the station?").await;
    tokio::time::timeout(
        Duration::from_secs(30),
        futures::StreamExt::next(&mut searches),
    )
    .await
    .expect("the director to look for a greeting");
    drop(searches);
    rig.start_library();
    let greeting = next::<PlayCommand>(&mut plays, "the greeting", |p| p.greeting).await;
    let answer = next::<PlayCommand>(&mut plays, "the answer", |p| !p.greeting).await;
    assert_eq!(greeting.session_id, "late-1");
    assert!(answer.command_id.contains("u1"), "{answer:?}");
    drop(rig);

    // A library that never comes: given up, with the reason.
    let rig = DirectorRig::start_without_library(&[("CINEMA_LLM_RETRY_FOR_S", "2")]).await;
    let mut events = rig.subscribe("never-1", SessionEvent::Conversation).await;
    rig.say("never-1", "u1", "Hello?").await;
    let gave_up = next::<ConversationEvent>(&mut events, "the turn given up", |e| {
        matches!(&e.kind, Some(Kind::Error(_)))
    })
    .await;
    let Some(Kind::Error(e)) = gave_up.kind else {
        unreachable!()
    };
    assert!(
        e.message.contains("turn failed") && e.message.contains("given up after"),
        "{}",
        e.message
    );
}

/// A replica killed with -9 in the middle of a turn: another replica
/// answers that turn once, and the session's next line after it, in order
/// (the later line waits for the earlier one, which comes back to the
/// waiting replica once the dead one's hold expires, after the consumer's
/// ack wait: that replica decides the earlier first instead of waiting for
/// itself until `order_wait_ms` and answering out of order).
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_killed_mid_turn_leaves_its_turn_to_another_in_order() {
    let double = OpenAiDouble::start().await;
    let env = openai_env(&double, "single");
    let rig = DirectorRig::start(&env, 0).await;
    // Replica A: a process, to be killed.
    let mut a = std::process::Command::new(testkit::bin("llm"))
        .env("NATS_URL", rig.nats.url())
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    testkit::eventually(Duration::from_secs(30), "replica A", async || {
        (rig.llm_replicas().await == 1).then_some(())
    })
    .await;
    let (mut session, _) = Session::open(&rig, "s-kill").await;
    // The model thinks long: A is in the middle of the turn while it does.
    double.set_delay(Duration::from_secs(10));
    let before = double.requests().len();
    rig.say("s-kill", "k1", "Is anybody home?").await;
    testkit::eventually(Duration::from_secs(30), "A to ask the model", async || {
        (double.requests().len() > before).then_some(())
    })
    .await;
    // Replica B comes; A dies holding the first line; the visitor's next
    // line goes to B, which must not decide it before the first.
    rig.start_llm(&env);
    testkit::eventually(Duration::from_secs(30), "replica B", async || {
        (rig.llm_replicas().await == 2).then_some(())
    })
    .await;
    tests::kill9(a.id() as i32);
    let _ = a.wait();
    let killed = std::time::Instant::now();
    double.set_delay(Duration::from_millis(50));
    rig.say("s-kill", "k2", "Where is the station?").await;

    let mut answered = Vec::new();
    while answered.len() < 2 {
        let p = next_within::<PlayCommand>(
            &mut session.plays,
            "both lines answered by B",
            Duration::from_secs(120),
            |p| !p.greeting,
        )
        .await;
        eprintln!(
            "{} answered {:.1} s after the kill",
            p.command_id,
            killed.elapsed().as_secs_f64()
        );
        answered.push(p.command_id);
    }
    assert_eq!(
        answered,
        [
            bus::ids::turn_command("s-kill", "k1"),
            bus::ids::turn_command("s-kill", "k2")
        ],
        "in order"
    );
    // A later line is answered next: the record holds each play once.
    rig.say("s-kill", "k3", "You are very kind.").await;
    let third = next::<PlayCommand>(&mut session.plays, "the third line", |p| !p.greeting).await;
    assert_eq!(third.command_id, bus::ids::turn_command("s-kill", "k3"));
    let recorded: Vec<PlayCommand> = tests::recorded(
        &rig.bus,
        bus::subjects::session("s-kill", SessionEvent::Play),
    )
    .await;
    for k in ["k1", "k2", "k3"] {
        let id = bus::ids::turn_command("s-kill", k);
        let n = recorded.iter().filter(|p| p.command_id == id).count();
        assert_eq!(n, 1, "{k} recorded {n} times");
    }
}

/// The retrieval director answers a line only when the library judges an
/// answer likely; otherwise it says nothing fits and plays a generic reply,
/// and it never answers the same line the same way twice in a session.
#[tokio::test(flavor = "multi_thread")]
async fn the_retrieval_director_says_when_nothing_fits() {
    let rig = DirectorRig::start(&[], 1).await;
    let (mut session, _greeting) = Session::open(&rig, "s-fits").await;

    let turn = session.say(&rig, "Do you have anything to eat?").await;
    assert_eq!(
        turn.played().clip.unwrap().caption,
        "There is soup, and bread, and a little cheese."
    );
    assert!(
        turn.reasoning().starts_with("answered with the line"),
        "{}",
        turn.reasoning()
    );

    let nothing = session.say(&rig, "What is the capital of Peru?").await;
    assert!(
        nothing
            .reasoning()
            .starts_with("nothing in the library answers it well"),
        "{}",
        nothing.reasoning()
    );
    // The generic reply is what the library says for the first fallback
    // query, "I don't know", looked for as a line said.
    let searched: Vec<(String, i32)> = nothing
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Search(s)) => Some((s.query.clone(), s.mode)),
            _ => None,
        })
        .collect();
    assert_eq!(
        searched,
        [(
            "I don't know".to_string(),
            wire::v1::SearchMode::Description as i32
        )]
    );

    let again = session.say(&rig, "Do you have anything to eat?").await;
    assert_ne!(
        again.play.clip_id, turn.play.clip_id,
        "never the same answer twice"
    );
}
