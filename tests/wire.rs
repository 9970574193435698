//! The wire framing: `[length: u32 big-endian][version: u8][postcard body]`. Every message
//! survives a round trip; garbage, unknown versions, truncations and oversized length
//! prefixes are errors, never panics, and an oversized prefix is refused before anything of
//! its size is allocated.
//!
//! `read_frame` and `write_frame` are async over tokio's I/O traits. Reading from a `&[u8]` and
//! writing to a `Vec<u8>` never wait, so a single poll with a no-op waker runs them to the end:
//! no runtime is needed (and under `--cfg madsim` none would be at hand).

use proptest::prelude::*;
use standby::protocol::{
    Append, AppendReply, Command, ConfigAck, Entry, Heartbeat, LeaseGrant, NodeReport, Publish,
    PublishReply, QuarantineSummary, RejectReason, Role, Route, Subscribe, Trim, Write, WriteReply,
};
use standby::time::Time;
use standby::types::{Cluster, Epoch, Lsn, NodeId, UserConfig, UserId, WriteId};
use standby::wire::{
    decode, encode, read_frame, write_frame, Message, WireError, MAX_FRAME_BYTES, VERSION,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::task::{Context, Poll, Waker};

// ---------------------------------------------------------------------------------------------
// A tiny executor and an allocation meter
// ---------------------------------------------------------------------------------------------

/// Runs a future that never waits (I/O on in-memory buffers) to completion.
fn run_now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("in-memory I/O never waits"),
    }
}

/// The system allocator, recording per thread the largest single allocation requested.
struct Metered;

thread_local! {
    static LARGEST_ALLOCATION: Cell<usize> = const { Cell::new(0) };
}

fn record(size: usize) {
    // `try_with`: the allocator may run while a thread's locals are being torn down.
    let _ = LARGEST_ALLOCATION.try_with(|largest| largest.set(largest.get().max(size)));
}

unsafe impl GlobalAlloc for Metered {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Metered = Metered;

/// The largest single allocation this thread made while running `f`.
fn largest_allocation_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST_ALLOCATION.with(|largest| largest.set(0));
    let output = f();
    (output, LARGEST_ALLOCATION.with(Cell::get))
}

// ---------------------------------------------------------------------------------------------
// Sample messages
// ---------------------------------------------------------------------------------------------

fn route(epoch: u64, cluster: Cluster, index: u16) -> Route {
    Route {
        epoch: Epoch(epoch),
        node: NodeId::new(cluster, index),
        address: format!("{cluster}-{index}.example:7000"),
    }
}

fn entry(lsn: u64) -> Entry {
    Entry {
        lsn: Lsn(lsn),
        epoch: Epoch(3),
        id: WriteId {
            user: UserId(9),
            seq: lsn * 10,
        },
        key: format!("key-{lsn}"),
        value: u64::MAX - lsn,
        at: Time(1_234_567 + lsn),
    }
}

/// The name of a message's variant. Exhaustive: a new variant does not compile until it is
/// named here, and then `every_variant_has_a_sample` asks for a sample of it.
fn variant(message: &Message) -> &'static str {
    match message {
        Message::Heartbeat(_) => "Heartbeat",
        Message::Report(_) => "Report",
        Message::Write(_) => "Write",
        Message::WriteReply(_) => "WriteReply",
        Message::Append(_) => "Append",
        Message::AppendReply(_) => "AppendReply",
        Message::Publish(_) => "Publish",
        Message::PublishReply(_) => "PublishReply",
        Message::Subscribe(_) => "Subscribe",
        Message::Config(_) => "Config",
        Message::ConfigAck(_) => "ConfigAck",
    }
}

const VARIANTS: [&str; 11] = [
    "Heartbeat",
    "Report",
    "Write",
    "WriteReply",
    "Append",
    "AppendReply",
    "Publish",
    "PublishReply",
    "Subscribe",
    "Config",
    "ConfigAck",
];

/// At least one message of every variant, with every optional field both empty and full and
/// every command, role and reject reason.
fn samples() -> Vec<Message> {
    let commands = vec![
        Command::Promote {
            epoch: Epoch(2),
            route: route(2, Cluster::B, 4),
        },
        Command::Follow {
            epoch: Epoch(2),
            primary: route(2, Cluster::B, 4),
            truncate_after: Lsn(17),
        },
        Command::Stop { epoch: Epoch(1) },
        Command::Fence {
            epoch: Epoch(1),
            route: None,
        },
        Command::Fence {
            epoch: Epoch(2),
            route: Some(route(2, Cluster::B, 0)),
        },
    ];
    let mut messages = vec![Message::Heartbeat(Heartbeat {
        round: 0,
        grant: None,
        command: None,
        trim: None,
    })];
    for (k, command) in commands.into_iter().enumerate() {
        messages.push(Message::Heartbeat(Heartbeat {
            round: u64::MAX - k as u64,
            grant: Some(LeaseGrant {
                epoch: Epoch(1),
                anchor_round: 41,
                duration_ms: 300,
            }),
            command: Some(command),
            trim: Some(Trim {
                epoch: Epoch(1),
                through: Lsn(u64::MAX - k as u64),
            }),
        }));
    }
    for role in [
        Role::Idle,
        Role::Primary,
        Role::Backup,
        Role::Stopped,
        Role::Fenced,
    ] {
        messages.push(Message::Report(NodeReport {
            round: 42,
            epoch: Epoch(2),
            role,
            last_lsn: Lsn(99),
            epoch_start_lsn: Lsn(90),
            trimmed: Lsn(80),
            quarantines: Vec::new(),
        }));
    }
    messages.push(Message::Report(NodeReport {
        round: 43,
        epoch: Epoch(2),
        role: Role::Backup,
        last_lsn: Lsn(90),
        epoch_start_lsn: Lsn(0),
        trimmed: Lsn(0),
        quarantines: vec![QuarantineSummary {
            epoch: Epoch(2),
            count: 9,
            lsns: Some((Lsn(91), Lsn(99))),
            span: Some((Time(1_000), Time(2_000))),
        }],
    }));
    messages.push(Message::Write(Write {
        id: WriteId {
            user: UserId(7),
            seq: 8,
        },
        epoch: Epoch(1),
        key: "k".into(),
        value: 5,
    }));
    messages.push(Message::WriteReply(WriteReply::Ok {
        lsn: Lsn(12),
        epoch: Epoch(1),
    }));
    for reason in [
        RejectReason::NotPrimary,
        RejectReason::StaleEpoch,
        RejectReason::FutureEpoch,
        RejectReason::NoLease,
        RejectReason::ReplicationTimeout,
    ] {
        messages.push(Message::WriteReply(WriteReply::Rejected {
            reason,
            route: None,
        }));
    }
    messages.push(Message::WriteReply(WriteReply::Rejected {
        reason: RejectReason::StaleEpoch,
        route: Some(route(5, Cluster::A, 1)),
    }));
    messages.push(Message::Append(Append {
        epoch: Epoch(3),
        prev_lsn: Lsn(0),
        entries: Vec::new(),
        trimmed: Lsn(0),
        snapshot: None,
    }));
    messages.push(Message::Append(Append {
        epoch: Epoch(3),
        prev_lsn: Lsn(10),
        entries: (11..=14).map(entry).collect(),
        trimmed: Lsn(10),
        snapshot: Some([("k".to_string(), 3), ("l".to_string(), u64::MAX)].into()),
    }));
    messages.push(Message::AppendReply(AppendReply {
        epoch: Epoch(3),
        applied: true,
        last_lsn: Lsn(14),
    }));
    messages.push(Message::AppendReply(AppendReply {
        epoch: Epoch(4),
        applied: false,
        last_lsn: Lsn(0),
    }));
    let configs: Vec<UserConfig> = (0..3)
        .map(|u| UserConfig {
            user: UserId(u),
            epoch: Epoch(2),
            node: NodeId::new(Cluster::B, u as u16),
            address: format!("b-{u}:7000"),
        })
        .collect();
    messages.push(Message::Publish(Publish {
        epoch: Epoch(2),
        configs: configs.clone(),
    }));
    messages.push(Message::Publish(Publish {
        epoch: Epoch(1),
        configs: Vec::new(),
    }));
    messages.push(Message::PublishReply(PublishReply {
        epoch: Epoch(2),
        stored: true,
    }));
    messages.push(Message::PublishReply(PublishReply {
        epoch: Epoch(3),
        stored: false,
    }));
    messages.push(Message::Subscribe(Subscribe { user: UserId(0) }));
    messages.push(Message::Config(configs[1].clone()));
    messages.push(Message::ConfigAck(ConfigAck {
        user: UserId(u32::MAX),
        epoch: Epoch(u64::MAX),
    }));
    messages
}

// ---------------------------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn every_variant_has_a_sample() {
    let covered: std::collections::BTreeSet<&str> = samples().iter().map(variant).collect();
    let all: std::collections::BTreeSet<&str> = VARIANTS.into_iter().collect();
    assert_eq!(covered, all);
}

#[test]
fn encode_then_decode_returns_every_message() {
    for message in samples() {
        let frame = encode(&message).expect("encodes");
        let length = u32::from_be_bytes(frame[..4].try_into().expect("four bytes"));
        assert_eq!(length as usize, frame.len() - 4, "{message:?}");
        assert_eq!(frame[4], VERSION, "{message:?}");
        let decoded = decode(&frame[4..]).expect("decodes");
        assert_eq!(decoded, message);
    }
}

#[test]
fn write_frame_then_read_frame_returns_every_message_in_order() {
    let messages = samples();
    let mut stream: Vec<u8> = Vec::new();
    for message in &messages {
        run_now(write_frame(&mut stream, message)).expect("writes");
    }
    let expected_len: usize = messages.iter().map(|m| encode(m).expect("ok").len()).sum();
    assert_eq!(
        stream.len(),
        expected_len,
        "frames are written back to back"
    );
    let mut reader: &[u8] = &stream;
    for message in &messages {
        let read = run_now(read_frame(&mut reader)).expect("reads");
        assert_eq!(&read, message);
    }
    assert!(
        matches!(run_now(read_frame(&mut reader)), Err(WireError::Closed)),
        "a clean end between frames is Closed"
    );
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

#[test]
fn decode_of_an_empty_body_is_an_error() {
    assert!(matches!(decode(&[]), Err(WireError::BadLength(0))));
}

#[test]
fn decode_of_an_unknown_version_is_an_error() {
    let frame = encode(&samples()[0]).expect("encodes");
    for version in [0u8, 2, 0x7f, 0xff] {
        let mut body = frame[4..].to_vec();
        body[0] = version;
        match decode(&body) {
            Err(WireError::Version(v)) => assert_eq!(v, version),
            other => panic!("version {version}: {other:?}"),
        }
    }
}

#[test]
fn decode_of_garbage_is_an_error() {
    let garbage: [&[u8]; 5] = [
        // Variant index far beyond the last variant.
        &[VERSION, 0xff, 0xff, 0xff, 0xff, 0x0f],
        &[VERSION, 11],
        // A varint that never ends.
        &[
            VERSION, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
        ],
        // A heartbeat whose option tag is neither 0 nor 1.
        &[VERSION, 0, 1, 7],
        // A write whose key claims a huge length.
        &[VERSION, 2, 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, b'k'],
    ];
    for body in garbage {
        assert!(
            matches!(decode(body), Err(WireError::Decode(_))),
            "{body:?} decoded"
        );
    }
}

#[test]
fn decode_of_every_truncated_body_is_an_error() {
    for message in samples() {
        let frame = encode(&message).expect("encodes");
        let body = &frame[4..];
        for cut in 0..body.len() {
            assert!(
                decode(&body[..cut]).is_err(),
                "{message:?} cut to {cut} of {} bytes decoded",
                body.len()
            );
        }
    }
}

#[test]
fn read_frame_of_a_truncated_frame_is_an_error() {
    for message in samples() {
        let frame = encode(&message).expect("encodes");
        for cut in 0..frame.len() {
            let mut reader: &[u8] = &frame[..cut];
            let result = run_now(read_frame(&mut reader));
            if cut == 0 {
                assert!(
                    matches!(result, Err(WireError::Closed)),
                    "nothing at all is a clean close: {result:?}"
                );
            } else if cut < 4 {
                // Part of a length prefix: an error either way (today `Closed`, although the
                // peer went away mid-frame).
                assert!(
                    matches!(&result, Err(WireError::Closed))
                        || matches!(&result, Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
                    "cut {cut}: {result:?}"
                );
            } else {
                assert!(
                    matches!(&result, Err(WireError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
                    "{message:?} cut to {cut}: {result:?}"
                );
            }
        }
    }
}

#[test]
fn read_frame_refuses_a_zero_length() {
    let mut reader: &[u8] = &[0, 0, 0, 0, VERSION];
    assert!(matches!(
        run_now(read_frame(&mut reader)),
        Err(WireError::BadLength(0))
    ));
}

#[test]
fn read_frame_refuses_an_oversized_length_without_allocating_it() {
    for length in [MAX_FRAME_BYTES + 1, MAX_FRAME_BYTES * 2, u32::MAX] {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[VERSION, 0, 0, 0]);
        let mut reader: &[u8] = &bytes;
        let (result, largest) = largest_allocation_during(|| run_now(read_frame(&mut reader)));
        match result {
            Err(WireError::BadLength(l)) => assert_eq!(l, length),
            other => panic!("length {length}: {other:?}"),
        }
        assert!(
            largest < 1 << 20,
            "length {length}: allocated {largest} bytes"
        );
    }
}

#[test]
fn allocation_meter_sees_a_frame_buffer() {
    // The meter itself works: reading a real frame allocates at least its body.
    let message = Message::Publish(Publish {
        epoch: Epoch(1),
        configs: (0..200)
            .map(|u| UserConfig {
                user: UserId(u),
                epoch: Epoch(1),
                node: NodeId::new(Cluster::A, 0),
                address: "a-0.example:7000".into(),
            })
            .collect(),
    });
    let frame = encode(&message).expect("encodes");
    let mut reader: &[u8] = &frame;
    let (result, largest) = largest_allocation_during(|| run_now(read_frame(&mut reader)));
    assert_eq!(result.expect("reads"), message);
    assert!(largest >= frame.len() - 4, "largest {largest}");
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

fn arb_epoch() -> impl Strategy<Value = Epoch> {
    any::<u64>().prop_map(Epoch)
}

fn arb_lsn() -> impl Strategy<Value = Lsn> {
    any::<u64>().prop_map(Lsn)
}

fn arb_node() -> impl Strategy<Value = NodeId> {
    (any::<bool>(), any::<u16>()).prop_map(|(a, index)| {
        let cluster = if a { Cluster::A } else { Cluster::B };
        NodeId::new(cluster, index)
    })
}

fn arb_route() -> impl Strategy<Value = Route> {
    (arb_epoch(), arb_node(), ".{0,12}").prop_map(|(epoch, node, address)| Route {
        epoch,
        node,
        address,
    })
}

fn arb_command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (arb_epoch(), arb_route()).prop_map(|(epoch, route)| Command::Promote { epoch, route }),
        (arb_epoch(), arb_route(), arb_lsn()).prop_map(|(epoch, primary, truncate_after)| {
            Command::Follow {
                epoch,
                primary,
                truncate_after,
            }
        }),
        arb_epoch().prop_map(|epoch| Command::Stop { epoch }),
        (arb_epoch(), prop::option::of(arb_route()))
            .prop_map(|(epoch, route)| Command::Fence { epoch, route }),
    ]
}

fn arb_role() -> impl Strategy<Value = Role> {
    prop::sample::select(vec![
        Role::Idle,
        Role::Primary,
        Role::Backup,
        Role::Stopped,
        Role::Fenced,
    ])
}

fn arb_write_id() -> impl Strategy<Value = WriteId> {
    (any::<u32>(), any::<u64>()).prop_map(|(u, seq)| WriteId {
        user: UserId(u),
        seq,
    })
}

fn arb_entry() -> impl Strategy<Value = Entry> {
    (
        arb_lsn(),
        arb_epoch(),
        arb_write_id(),
        ".{0,8}",
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(lsn, epoch, id, key, value, at)| Entry {
            lsn,
            epoch,
            id,
            key,
            value,
            at: Time(at),
        })
}

fn arb_config() -> impl Strategy<Value = UserConfig> {
    (any::<u32>(), arb_epoch(), arb_node(), ".{0,12}").prop_map(|(u, epoch, node, address)| {
        UserConfig {
            user: UserId(u),
            epoch,
            node,
            address,
        }
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let quarantine = (
        arb_epoch(),
        any::<u64>(),
        prop::option::of((arb_lsn(), arb_lsn())),
        prop::option::of((any::<u64>(), any::<u64>())),
    )
        .prop_map(|(epoch, count, lsns, span)| QuarantineSummary {
            epoch,
            count,
            lsns,
            span: span.map(|(a, b)| (Time(a), Time(b))),
        });
    let reason = prop::sample::select(vec![
        RejectReason::NotPrimary,
        RejectReason::StaleEpoch,
        RejectReason::FutureEpoch,
        RejectReason::NoLease,
        RejectReason::ReplicationTimeout,
    ]);
    prop_oneof![
        (
            any::<u64>(),
            prop::option::of((arb_epoch(), any::<u64>(), any::<u64>())),
            prop::option::of(arb_command()),
            prop::option::of((arb_epoch(), arb_lsn())),
        )
            .prop_map(
                |(round, grant, command, trim)| Message::Heartbeat(Heartbeat {
                    round,
                    grant: grant.map(|(epoch, anchor_round, duration_ms)| LeaseGrant {
                        epoch,
                        anchor_round,
                        duration_ms,
                    }),
                    command,
                    trim: trim.map(|(epoch, through)| Trim { epoch, through }),
                })
            ),
        (
            any::<u64>(),
            arb_epoch(),
            arb_role(),
            arb_lsn(),
            arb_lsn(),
            arb_lsn(),
            prop::collection::vec(quarantine, 0..3),
        )
            .prop_map(
                |(round, epoch, role, last_lsn, epoch_start_lsn, trimmed, quarantines)| {
                    Message::Report(NodeReport {
                        round,
                        epoch,
                        role,
                        last_lsn,
                        epoch_start_lsn,
                        trimmed,
                        quarantines,
                    })
                }
            ),
        (arb_write_id(), arb_epoch(), ".{0,8}", any::<u64>()).prop_map(
            |(id, epoch, key, value)| Message::Write(Write {
                id,
                epoch,
                key,
                value
            })
        ),
        (arb_lsn(), arb_epoch())
            .prop_map(|(lsn, epoch)| Message::WriteReply(WriteReply::Ok { lsn, epoch })),
        (reason, prop::option::of(arb_route())).prop_map(|(reason, route)| {
            Message::WriteReply(WriteReply::Rejected { reason, route })
        }),
        (
            arb_epoch(),
            arb_lsn(),
            prop::collection::vec(arb_entry(), 0..4),
            arb_lsn(),
            prop::option::of(prop::collection::btree_map(".{0,8}", any::<u64>(), 0..3)),
        )
            .prop_map(|(epoch, prev_lsn, entries, trimmed, snapshot)| {
                Message::Append(Append {
                    epoch,
                    prev_lsn,
                    entries,
                    trimmed,
                    snapshot,
                })
            }),
        (arb_epoch(), any::<bool>(), arb_lsn()).prop_map(|(epoch, applied, last_lsn)| {
            Message::AppendReply(AppendReply {
                epoch,
                applied,
                last_lsn,
            })
        }),
        (arb_epoch(), prop::collection::vec(arb_config(), 0..4))
            .prop_map(|(epoch, configs)| Message::Publish(Publish { epoch, configs })),
        (arb_epoch(), any::<bool>())
            .prop_map(|(epoch, stored)| Message::PublishReply(PublishReply { epoch, stored })),
        any::<u32>().prop_map(|u| Message::Subscribe(Subscribe { user: UserId(u) })),
        arb_config().prop_map(Message::Config),
        (any::<u32>(), arb_epoch()).prop_map(|(u, epoch)| Message::ConfigAck(ConfigAck {
            user: UserId(u),
            epoch
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_message_round_trips_through_a_frame(message in arb_message()) {
        let frame = encode(&message).expect("encodes");
        prop_assert_eq!(u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize, frame.len() - 4);
        prop_assert_eq!(decode(&frame[4..]).expect("decodes"), message.clone());
        let mut reader: &[u8] = &frame;
        prop_assert_eq!(run_now(read_frame(&mut reader)).expect("reads"), message);
        prop_assert!(reader.is_empty(), "read exactly one frame");
    }

    /// Arbitrary bytes never panic the decoder; whatever does decode is a message that
    /// survives its own round trip.
    #[test]
    fn decode_of_arbitrary_bytes_never_panics(
        version in prop::sample::select(vec![VERSION, VERSION, 0, 2, 0xff]),
        rest in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut body = vec![version];
        body.extend_from_slice(&rest);
        match decode(&body) {
            Ok(message) => {
                prop_assert_eq!(version, VERSION);
                let frame = encode(&message).expect("re-encodes");
                prop_assert_eq!(decode(&frame[4..]).expect("decodes again"), message);
            }
            Err(WireError::Version(v)) => {
                prop_assert_ne!(version, VERSION);
                prop_assert_eq!(v, version);
            }
            Err(WireError::Decode(_)) => prop_assert_eq!(version, VERSION),
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    /// A mutated or truncated message body is either an error or some other valid message;
    /// it never panics.
    #[test]
    fn decode_of_a_damaged_message_never_panics(
        message in arb_message(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = encode(&message).expect("encodes");
        let mut body = frame[4..].to_vec();
        for (at, value) in flips {
            let at = at.index(body.len());
            if at > 0 {
                body[at] = value;
            }
        }
        let cut = cut.index(body.len() + 1);
        if let Ok(decoded) = decode(&body[..cut]) {
            let again = encode(&decoded).expect("re-encodes");
            prop_assert_eq!(decode(&again[4..]).expect("decodes again"), decoded);
        }
    }

    /// Arbitrary streams behind a plausible length prefix never panic `read_frame`, and it
    /// never reads past the frame it was told about.
    #[test]
    fn read_frame_of_arbitrary_bytes_never_panics(
        length in 0u32..300,
        rest in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = length.to_be_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        let mut reader: &[u8] = &bytes;
        let result = run_now(read_frame(&mut reader));
        if length as usize <= rest.len() && length > 0 {
            prop_assert_eq!(reader.len(), rest.len() - length as usize);
        }
        match result {
            Ok(message) => prop_assert_eq!(Ok(message), decode(&rest[..length as usize]).map_err(|e| e.to_string())),
            Err(WireError::BadLength(l)) => prop_assert_eq!(l, 0),
            Err(WireError::Io(_)) => prop_assert!(rest.len() < length as usize),
            Err(WireError::Version(_) | WireError::Decode(_)) => {}
            Err(WireError::Closed) => prop_assert!(false, "a full prefix was there"),
        }
    }
}
