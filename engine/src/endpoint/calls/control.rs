//! Call control from the control interface beyond hanging up and transferring: DTMF sent into
//! a live call, and recording started and stopped on demand.
//!
//! Both only ask the media workers ([`Command::SendDtmf`], [`Command::Record`],
//! [`Command::StopRecord`]). Digits are queued one [`Command::SendDtmf`] each: the worker's
//! session sends them one after another, each as the leg negotiated it (RFC 4733 with its three
//! end packets, or in-band tones followed by a 60 ms gap), so consecutive digits stay distinct.
//! A recording ends in [`MediaEvent::Recorded`], which puts its length into the call record as
//! for a recording started by `media.record_calls`.
use super::*;

/// The longest digit string one request sends.
pub const MAX_DTMF_DIGITS: usize = 32;
/// The shortest and longest tone per digit a request may ask for.
pub const MIN_DTMF_DURATION: Duration = Duration::from_millis(40);
pub const MAX_DTMF_DURATION: Duration = Duration::from_millis(2000);

/// Which party of a call hears the digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfTarget {
    /// The customer: the caller of an inbound call, the dialled number of a call our phone
    /// placed out through a trunk, the dialled customer of a click-to-dial call.
    Customer,
    /// The agent (or the answering phone) bridged to the customer.
    Agent,
}

impl DtmfTarget {
    pub fn code(self) -> &'static str {
        match self {
            DtmfTarget::Customer => "customer",
            DtmfTarget::Agent => "agent",
        }
    }
}

/// Why a call-control request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallControlError {
    #[error("no call with id {call_id}")]
    NoSuchCall { call_id: String },
    /// The call has no such party (no agent is bridged to the caller yet).
    #[error("call {call_id} has no {} leg", .party.code())]
    NoSuchParty { call_id: String, party: DtmfTarget },
    /// The party's leg is not answered (still ringing), or its media is gone (hanging up).
    #[error("the {} leg of call {call_id} is not answered", .party.code())]
    NotAnswered { call_id: String, party: DtmfTarget },
    /// The call has a recording already: running, being finished, or done (one started here,
    /// a voicemail, `media.record_calls`). A call's record names one file, so a second would
    /// push the first out of it.
    #[error("call {call_id} is already recorded")]
    AlreadyRecording { call_id: String },
    #[error("call {call_id} is not being recorded")]
    NotRecording { call_id: String },
    #[error("no digits to send")]
    NoDigits,
    #[error("{len} digits; at most {max} are sent at once")]
    TooManyDigits { len: usize, max: usize },
    /// Not one of `0`–`9`, `*`, `#`, `A`–`D`.
    #[error("{digit:?} at position {position} is not a DTMF digit (0-9, *, #, A-D)")]
    InvalidDigit { digit: char, position: usize },
    #[error("a digit lasts {min_ms} to {max_ms} ms, not {ms} ms")]
    DurationOutOfRange {
        ms: u128,
        min_ms: u128,
        max_ms: u128,
    },
}

/// The digits of a request: `0`–`9`, `*`, `#`, `A`–`D` (upper case), 1 to
/// [`MAX_DTMF_DIGITS`] of them.
pub fn parse_dtmf(digits: &str) -> Result<Vec<Digit>, CallControlError> {
    let len = digits.chars().count();
    if len == 0 {
        return Err(CallControlError::NoDigits);
    }
    if len > MAX_DTMF_DIGITS {
        return Err(CallControlError::TooManyDigits {
            len,
            max: MAX_DTMF_DIGITS,
        });
    }
    digits
        .chars()
        .enumerate()
        .map(|(position, c)| {
            Digit::from_char(c)
                .filter(|_| !c.is_ascii_lowercase())
                .ok_or(CallControlError::InvalidDigit { digit: c, position })
        })
        .collect()
}

/// A digit's duration, if within [`MIN_DTMF_DURATION`]..=[`MAX_DTMF_DURATION`].
pub fn check_dtmf_duration(duration: Duration) -> Result<Duration, CallControlError> {
    if (MIN_DTMF_DURATION..=MAX_DTMF_DURATION).contains(&duration) {
        Ok(duration)
    } else {
        Err(CallControlError::DurationOutOfRange {
            ms: duration.as_millis(),
            min_ms: MIN_DTMF_DURATION.as_millis(),
            max_ms: MAX_DTMF_DURATION.as_millis(),
        })
    }
}

impl Endpoint {
    /// The live call whose record id is `call_id`.
    fn controlled_call(&self, call_id: &str) -> Result<CallKey, CallControlError> {
        self.calls
            .calls
            .iter()
            .find(|(_, c)| c.cdr.call_id == call_id)
            .map(|(k, _)| *k)
            .ok_or_else(|| CallControlError::NoSuchCall {
                call_id: call_id.to_owned(),
            })
    }

    /// The leg of `party`, answered and with its media up.
    fn party_leg(&self, key: CallKey, party: DtmfTarget) -> Result<LegId, CallControlError> {
        let call = &self.calls.calls[&key];
        let call_id = || call.cdr.call_id.clone();
        // A call one of our phones placed out through a trunk has the customer on the far side;
        // every other call has the customer as its first leg.
        let dialled_customer = call.kind == Kind::Bridge
            && call
                .winner
                .and_then(|w| self.calls.legs.get(&w))
                .and_then(|l| l.record.as_ref())
                .is_some_and(|r| r.leg.kind == LegKind::Outbound);
        let (leg, answered) = match (party, dialled_customer) {
            (DtmfTarget::Customer, false) | (DtmfTarget::Agent, true) => {
                (Some(call.a), call.answered)
            }
            // The far leg is the winner only once it answered.
            (DtmfTarget::Customer, true) | (DtmfTarget::Agent, false) => (call.winner, true),
        };
        let leg = leg.ok_or_else(|| CallControlError::NoSuchParty {
            call_id: call_id(),
            party,
        })?;
        let up = self
            .calls
            .legs
            .get(&leg)
            .is_some_and(|l| l.negotiated.is_some() && !l.media_closed && !l.bye_sent);
        if !answered || !up {
            return Err(CallControlError::NotAnswered {
                call_id: call_id(),
                party,
            });
        }
        Ok(leg)
    }

    /// Send `digits` to `to` in the call whose record id is `call_id`, each lasting `duration`,
    /// one after another.
    pub fn send_dtmf(
        &mut self,
        now: Instant,
        call_id: &str,
        to: DtmfTarget,
        digits: &str,
        duration: Duration,
    ) -> Result<(), CallControlError> {
        let digits = parse_dtmf(digits)?;
        let duration = check_dtmf_duration(duration)?;
        let key = self.controlled_call(call_id)?;
        let leg = self.party_leg(key, to)?;
        let session = self.calls.legs[&leg].session;
        tracing::info!(
            call = key.0,
            to = to.code(),
            digits = digits.len(),
            "DTMF sent by the control interface"
        );
        metrics::counter!("dtmf_sent_total", "via" => "control").increment(digits.len() as u64);
        for digit in digits {
            self.events.push_back(Event::Media(Command::SendDtmf {
                id: session,
                digit,
                duration,
            }));
        }
        self.drain_tx_events(now);
        Ok(())
    }

    /// Start recording the call whose record id is `call_id`, as `media.record_calls` does: the
    /// caller's leg, stereo (caller left, the other side right), into a file under the
    /// recordings folder whose path goes into the call record at once. Returns that path.
    pub fn start_recording(
        &mut self,
        now: Instant,
        call_id: &str,
    ) -> Result<String, CallControlError> {
        let key = self.controlled_call(call_id)?;
        // One file per call: a second would push the first (a voicemail, say) out of the record.
        if self.calls.calls[&key].cdr.recording.is_some() {
            return Err(CallControlError::AlreadyRecording {
                call_id: call_id.to_owned(),
            });
        }
        // The caller's leg carries both sides once bridged, and the flow's prompts before.
        let leg = self.calls.calls[&key].a;
        let session = self.calls.legs[&leg].session;
        let up = self
            .calls
            .legs
            .get(&leg)
            .is_some_and(|l| l.negotiated.is_some() && !l.media_closed && !l.bye_sent);
        if !self.calls.calls[&key].answered || !up {
            return Err(CallControlError::NotAnswered {
                call_id: call_id.to_owned(),
                party: DtmfTarget::Customer,
            });
        }
        let name = format!("call-{}-{}.wav", key.0, self.tags.next());
        let path = self.call_cfg.recordings_dir.join(name);
        let shown = path.display().to_string();
        self.calls.set_recording(key, shown.clone());
        tracing::info!(call = key.0, path = %shown, "recording started by the control interface");
        self.events.push_back(Event::Media(Command::Record {
            id: session,
            request: RecordRequest { path },
        }));
        self.drain_tx_events(now);
        Ok(shown)
    }

    /// Stop the recording of the call whose record id is `call_id`. The file is finished by the
    /// media worker; its length reaches the record with [`MediaEvent::Recorded`].
    pub fn stop_recording(&mut self, now: Instant, call_id: &str) -> Result<(), CallControlError> {
        let key = self.controlled_call(call_id)?;
        let call = &self.calls.calls[&key];
        let running = matches!(call.cdr.recording, Some((_, None))) && !call.cdr.recording_stopping;
        if !running {
            return Err(CallControlError::NotRecording {
                call_id: call_id.to_owned(),
            });
        }
        let session = self.calls.legs.get(&call.a).map(|l| l.session);
        if let Some(c) = self.calls.calls.get_mut(&key) {
            c.cdr.recording_stopping = true;
        }
        if let Some(id) = session {
            tracing::info!(call = key.0, "recording stopped by the control interface");
            self.events
                .push_back(Event::Media(Command::StopRecord { id }));
        }
        self.drain_tx_events(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::test_net::*;
    use super::*;
    use switchboard_media::record::RecordingInfo;

    /// 1001 calls 1002, whose phone answers: returns (the record id, the caller's session, the
    /// phone's session, the caller's To tag).
    fn bridged(net: &mut Net) -> (String, SessionId, SessionId, String) {
        net.deliver(CALLER, &caller_invite("1002", "c1", &sdp(4000, "sendrecv")));
        let inv = requests(&net.take(PHONE_A), Method::Invite)[0].clone();
        net.deliver_msg(
            PHONE_A,
            &phone_response(&inv, 200, "phone", PHONE_A, Some(&sdp(6000, "sendrecv"))),
        );
        let answer = responses(&net.take(CALLER));
        let tag = to_tag(answer.last().unwrap());
        net.deliver(CALLER, &caller_ack(&tag, "c1"));
        let (a, b) = net
            .commands
            .iter()
            .find_map(|c| match c {
                Command::Bridge { a, b } => Some((*a, *b)),
                _ => None,
            })
            .expect("bridged");
        (net.opened[0].call_id.clone(), a, b, tag)
    }

    fn dtmf_sent(net: &mut Net) -> Vec<(SessionId, char, Duration)> {
        net.commands
            .drain(..)
            .filter_map(|c| match c {
                Command::SendDtmf {
                    id,
                    digit,
                    duration,
                } => Some((id, digit.as_char(), duration)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn digits_go_one_command_each_in_order_to_the_chosen_party() {
        let mut net = Net::new(&[PHONE_A]);
        let (call_id, caller, phone, _) = bridged(&mut net);
        net.commands.clear();
        let ms = Duration::from_millis(160);
        net.ep
            .send_dtmf(net.now, &call_id, DtmfTarget::Customer, "12#", ms)
            .unwrap();
        net.pump();
        assert_eq!(
            dtmf_sent(&mut net),
            [(caller, '1', ms), (caller, '2', ms), (caller, '#', ms)]
        );
        let long = Duration::from_millis(2000);
        net.ep
            .send_dtmf(net.now, &call_id, DtmfTarget::Agent, "*D", long)
            .unwrap();
        net.pump();
        assert_eq!(
            dtmf_sent(&mut net),
            [(phone, '*', long), (phone, 'D', long)]
        );
    }

    #[test]
    fn bad_digits_unknown_calls_and_missing_parties_are_refused_without_sound() {
        let mut net = Net::new(&[PHONE_A]);
        let ms = Duration::from_millis(160);
        assert_eq!(
            net.ep
                .send_dtmf(net.now, "nope", DtmfTarget::Customer, "1", ms),
            Err(CallControlError::NoSuchCall {
                call_id: "nope".into()
            })
        );
        // Ringing: nobody has answered yet.
        net.deliver(CALLER, &caller_invite("1002", "c1", &sdp(4000, "sendrecv")));
        let call_id = net.opened[0].call_id.clone();
        assert!(matches!(
            net.ep
                .send_dtmf(net.now, &call_id, DtmfTarget::Customer, "1", ms),
            Err(CallControlError::NotAnswered { .. })
        ));
        assert!(matches!(
            net.ep
                .send_dtmf(net.now, &call_id, DtmfTarget::Agent, "1", ms),
            Err(CallControlError::NoSuchParty { .. })
        ));
        for (digits, duration) in [
            ("", ms),
            ("12e", ms),
            ("1a", ms),
            (&"1".repeat(33)[..], ms),
            ("1", Duration::from_millis(39)),
            ("1", Duration::from_millis(2001)),
        ] {
            assert!(
                net.ep
                    .send_dtmf(net.now, &call_id, DtmfTarget::Customer, digits, duration)
                    .is_err(),
                "{digits:?} {duration:?}"
            );
        }
        assert!(dtmf_sent(&mut net).is_empty());
        assert_eq!(
            parse_dtmf("12e"),
            Err(CallControlError::InvalidDigit {
                digit: 'e',
                position: 2
            })
        );
        assert_eq!(parse_dtmf("0123456789*#ABCD").unwrap().len(), 16);
    }

    #[test]
    fn a_queued_caller_hears_digits_and_the_agent_is_reachable_once_answered() {
        use crate::acd::{QueueConfig, Strategy};
        use switchboard_media::prompt::{synth, Prompt};
        let mut net = Net::with(
            Setup::new()
                .registered("1002", &[PHONE_A])
                .prompt(Prompt::from_samples("hold", &synth::tone(440.0, 200, 8000)))
                .flow("4000", queue_flow())
                .queueing(QueueSettings {
                    queues: vec![QueueConfig::new("sales", Strategy::Linear)],
                    agents: vec![agent("a1", "1002", 1, true)],
                    ..QueueSettings::default()
                }),
        );
        let _tag = enter_service(&mut net, "s1");
        let call_id = net.opened[0].call_id.clone();
        let caller = net.sessions[0];
        let ms = Duration::from_millis(100);
        net.commands.clear();
        net.ep
            .send_dtmf(net.now, &call_id, DtmfTarget::Customer, "9", ms)
            .unwrap();
        net.pump();
        assert_eq!(dtmf_sent(&mut net), [(caller, '9', ms)]);
        // The agent's phone rings: there is no agent to hear digits yet.
        let inv = requests(&net.take(PHONE_A), Method::Invite).remove(0);
        assert_eq!(
            net.ep
                .send_dtmf(net.now, &call_id, DtmfTarget::Agent, "9", ms),
            Err(CallControlError::NoSuchParty {
                call_id: call_id.clone(),
                party: DtmfTarget::Agent
            })
        );
        net.deliver_msg(
            PHONE_A,
            &phone_response(&inv, 200, "p1", PHONE_A, Some(&sdp(6000, "sendrecv"))),
        );
        let agent_session = net
            .commands
            .iter()
            .find_map(|c| match c {
                Command::Bridge { a, b } if *a == caller => Some(*b),
                _ => None,
            })
            .expect("the agent is bridged to the caller");
        net.commands.clear();
        net.ep
            .send_dtmf(net.now, &call_id, DtmfTarget::Agent, "0#", ms)
            .unwrap();
        net.ep
            .send_dtmf(net.now, &call_id, DtmfTarget::Customer, "1", ms)
            .unwrap();
        net.pump();
        assert_eq!(
            dtmf_sent(&mut net),
            [
                (agent_session, '0', ms),
                (agent_session, '#', ms),
                (caller, '1', ms)
            ]
        );
    }

    #[test]
    fn recording_starts_once_stops_once_and_the_record_keeps_path_and_length() {
        let mut net = Net::new(&[PHONE_A]);
        let (call_id, caller, _, tag) = bridged(&mut net);
        net.commands.clear();
        let path = net.ep.start_recording(net.now, &call_id).unwrap();
        net.pump();
        assert!(
            path.starts_with("data/recordings/call-") && path.ends_with(".wav"),
            "{path}"
        );
        let started: Vec<_> = net
            .commands
            .drain(..)
            .filter_map(|c| match c {
                Command::Record { id, request } => Some((id, request.path)),
                _ => None,
            })
            .collect();
        assert_eq!(started, [(caller, PathBuf::from(&path))]);
        assert_eq!(
            net.ep.start_recording(net.now, &call_id),
            Err(CallControlError::AlreadyRecording {
                call_id: call_id.clone()
            })
        );

        net.ep.stop_recording(net.now, &call_id).unwrap();
        net.pump();
        assert!(
            matches!(net.commands[..], [Command::StopRecord { id }] if id == caller),
            "{:?}",
            net.commands
        );
        assert_eq!(
            net.ep.stop_recording(net.now, &call_id),
            Err(CallControlError::NotRecording {
                call_id: call_id.clone()
            }),
            "a stop already asked for is not asked again"
        );
        assert!(
            matches!(
                net.ep.start_recording(net.now, &call_id),
                Err(CallControlError::AlreadyRecording { .. })
            ),
            "no new file until the last one is finished"
        );
        net.ep.handle_media(
            net.now,
            MediaEvent::Recorded {
                id: caller,
                result: Ok(RecordingInfo {
                    path: PathBuf::from(&path),
                    duration: Duration::from_millis(12_340),
                    samples: 98_720,
                    dropped: 0,
                    late_samples: 0,
                    rejected_frames: 0,
                }),
            },
        );
        net.pump();
        assert!(
            matches!(
                net.ep.start_recording(net.now, &call_id),
                Err(CallControlError::AlreadyRecording { .. })
            ),
            "a finished file is not pushed out of the record by a second one"
        );
        net.deliver(CALLER, &caller_in_dialog("BYE", 2, &tag, "c1", ""));
        let (_, close) = net.closed.last().expect("the record is closed");
        assert_eq!(close.recording_path.as_deref(), Some(path.as_str()));
        assert_eq!(close.recording_duration_ms, Some(12_340));
        assert_eq!(
            net.ep.start_recording(net.now, &call_id),
            Err(CallControlError::NoSuchCall {
                call_id: call_id.clone()
            })
        );
    }

    /// A recording started from the control interface is replaced when the flow records a
    /// voicemail on the same session: the media worker finishes the first file first. Its
    /// end must not be taken for the end of the message (the flow would go on while the caller
    /// is still speaking) nor replace the voicemail in the record.
    #[test]
    fn a_replaced_recording_does_not_end_the_voicemail_that_replaced_it() {
        use crate::ivr::model::{self, Flow, NodeId, NodeKind};
        use switchboard_media::prompt::{synth, Prompt};
        let flow = Flow {
            name: "vm".into(),
            version: "v1".into(),
            start: NodeId(0),
            nodes: vec![
                node(
                    "greet",
                    NodeKind::Play {
                        prompts: vec!["hello".into()],
                        barge_in: false,
                        next: NodeId(1),
                    },
                ),
                node(
                    "message",
                    NodeKind::Voicemail {
                        prompts: vec![],
                        beep: false,
                        max_length: Duration::from_secs(60),
                        mailbox: "sales".into(),
                        done: NodeId(2),
                    },
                ),
                node(
                    "bye",
                    NodeKind::Hangup {
                        cause: model::HangupCause::Normal,
                    },
                ),
            ],
            calendars: Default::default(),
            file: "vm.yaml".into(),
        };
        let mut net = Net::with(
            Setup::new()
                .prompt(Prompt::from_samples(
                    "hello",
                    &synth::tone(440.0, 200, 8000),
                ))
                .flow("4000", flow),
        );
        let _tag = enter_service(&mut net, "v1");
        let call_id = net.opened[0].call_id.clone();
        let caller = net.sessions[0];
        let ours = net.ep.start_recording(net.now, &call_id).unwrap();
        net.pump();
        let token = net
            .commands
            .iter()
            .find_map(|c| match c {
                Command::Play { token, .. } => Some(*token),
                _ => None,
            })
            .expect("the greeting plays");
        net.ep
            .handle_media(net.now, MediaEvent::PlayDone { id: caller, token });
        net.pump();
        let message = net
            .commands
            .iter()
            .rev()
            .find_map(|c| match c {
                Command::Record { request, .. } => Some(request.path.display().to_string()),
                _ => None,
            })
            .expect("the voicemail records");
        assert_ne!(message, ours);
        let finished = |path: &str, ms: u64| MediaEvent::Recorded {
            id: caller,
            result: Ok(RecordingInfo {
                path: PathBuf::from(path),
                duration: Duration::from_millis(ms),
                samples: ms * 8,
                dropped: 0,
                late_samples: 0,
                rejected_frames: 0,
            }),
        };
        // The worker finishes our file as the voicemail starts.
        net.ep.handle_media(net.now, finished(&ours, 3_000));
        net.pump();
        assert!(
            net.closed.is_empty(),
            "the flow still waits for the message"
        );
        net.ep.handle_media(net.now, finished(&message, 7_000));
        net.pump();
        let (_, close) = net
            .closed
            .last()
            .expect("the flow hangs up after the message");
        assert_eq!(close.recording_path.as_deref(), Some(message.as_str()));
        assert_eq!(close.recording_duration_ms, Some(7_000));
    }

    #[test]
    fn a_call_not_answered_yet_is_not_recorded() {
        let mut net = Net::new(&[PHONE_A]);
        net.deliver(CALLER, &caller_invite("1002", "c1", &sdp(4000, "sendrecv")));
        let call_id = net.opened[0].call_id.clone();
        assert!(matches!(
            net.ep.start_recording(net.now, &call_id),
            Err(CallControlError::NotAnswered { .. })
        ));
        assert_eq!(
            net.ep.stop_recording(net.now, &call_id),
            Err(CallControlError::NotRecording { call_id })
        );
        assert!(!net
            .commands
            .iter()
            .any(|c| matches!(c, Command::Record { .. } | Command::StopRecord { .. })));
    }
}
