use super::*;
use crate::ivr::model::{Calendar, Expr, Node, Template};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Makes a node's kind, given a resolver from node names to ids.
pub(crate) type MakeKind = dyn Fn(&dyn Fn(&str) -> NodeId) -> NodeKind;

/// Builds a flow from `(name, kind)` pairs.
pub(crate) fn build(name: &str, nodes: &[(&str, &MakeKind)]) -> Flow {
    let names: Vec<&str> = nodes.iter().map(|(n, _)| *n).collect();
    let id = |n: &str| -> NodeId {
        NodeId(names.iter().position(|x| *x == n).expect("node name") as u32)
    };
    let calendar = Calendar {
        name: "office".into(),
        time_zone: "Asia/Shanghai".into(),
        // Monday to Friday 09:00-18:00.
        weekly: [
            vec![(540, 1080)],
            vec![(540, 1080)],
            vec![(540, 1080)],
            vec![(540, 1080)],
            vec![(540, 1080)],
            vec![],
            vec![],
        ],
        holidays: vec![],
        special_days: vec![],
    };
    Flow {
        name: name.into(),
        version: "0".repeat(64),
        start: NodeId(0),
        nodes: nodes
            .iter()
            .enumerate()
            .map(|(i, (n, kind))| Node {
                name: (*n).into(),
                line: i + 1,
                kind: kind(&id),
            })
            .collect(),
        calendars: BTreeMap::from([("office".to_owned(), Arc::new(calendar))]),
        file: format!("{name}.yaml"),
    }
}

fn p(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn queue(id: &dyn Fn(&str) -> NodeId, name: &str) -> NodeKind {
    NodeKind::Queue {
        queue: name.into(),
        priority: Some(Expr("10 if vars.level == 'vip' else 0".into())),
        max_wait: Duration::from_secs(300),
        announce_every: Some(Duration::from_secs(60)),
        music: None,
        exit_key: Some('*'),
        after_agent: None,
        timeout: id("voicemail"),
        exit: id("voicemail"),
        no_agents: id("voicemail"),
        full: id("voicemail"),
        agent_unavailable: None,
    }
}

/// The demo flow's shape: hours → menu (1 sales, 2 support, 0 voicemail) → queues; closed and
/// failed paths end in voicemail or a goodbye.
pub(crate) fn demo() -> Flow {
    build(
        "main",
        &[
            ("hours", &|id| NodeKind::Hours {
                calendar: "office".into(),
                open: id("lookup"),
                closed: id("closed"),
            }),
            ("lookup", &|id| NodeKind::Http {
                method: HttpMethod::Get,
                url: Template("https://crm.example/customers/{{ caller }}".into()),
                headers: vec![],
                body: None,
                timeout: Duration::from_secs(2),
                extract: vec![("level".into(), "/level".into())],
                ok: id("menu"),
                error: id("menu"),
            }),
            ("menu", &|id| NodeKind::Menu {
                prompts: p(&["welcome", "menu"]),
                choices: vec![
                    ('1', id("sales_queue")),
                    ('2', id("support_queue")),
                    ('0', id("voicemail")),
                ],
                timeout: Duration::from_secs(5),
                retries: 2,
                no_input_prompts: p(&["no_input"]),
                invalid_prompts: p(&["invalid"]),
                no_input: id("goodbye"),
                invalid: id("goodbye"),
            }),
            ("sales_queue", &|id| queue(id, "sales")),
            ("support_queue", &|id| queue(id, "support")),
            ("voicemail", &|id| NodeKind::Voicemail {
                prompts: p(&["leave_message"]),
                beep: true,
                max_length: Duration::from_secs(120),
                mailbox: "sales".into(),
                done: id("goodbye"),
            }),
            ("closed", &|id| NodeKind::Play {
                prompts: p(&["closed"]),
                barge_in: false,
                next: id("voicemail"),
            }),
            ("goodbye", &|_| NodeKind::Hangup {
                cause: HangupCause::Normal,
            }),
        ],
    )
}

/// Counts start and end tags and checks they nest; enough to know a browser will open it.
fn check_xml(text: &str) -> usize {
    let mut stack: Vec<String> = Vec::new();
    let mut elements = 0;
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let end = after.find('>').expect("unterminated tag");
        let tag = &after[..end];
        rest = &after[end + 1..];
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack.pop().expect("close tag without open tag");
            assert_eq!(open, name.trim(), "mismatched tags");
        } else {
            elements += 1;
            let name = tag.split_whitespace().next().unwrap_or_default().to_owned();
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
    }
    assert!(stack.is_empty(), "unclosed tags: {stack:?}");
    elements
}

#[test]
fn dot_has_every_node_and_every_exit() {
    let flow = demo();
    let text = dot(&flow);
    assert!(text.starts_with("digraph \"main\" {"));
    for node in &flow.nodes {
        assert!(
            text.contains(&format!("  \"{}\" [label=\"{}\\n[", node.name, node.name)),
            "{} missing:\n{text}",
            node.name
        );
    }
    for edge in [
        "\"hours\" -> \"lookup\" [label=\"open\"]",
        "\"hours\" -> \"closed\" [label=\"closed\"]",
        "\"lookup\" -> \"menu\" [label=\"ok, error\"]",
        "\"menu\" -> \"sales_queue\" [label=\"1\"]",
        "\"menu\" -> \"support_queue\" [label=\"2\"]",
        "\"menu\" -> \"voicemail\" [label=\"0\"]",
        "\"menu\" -> \"goodbye\" [label=\"no_input, invalid\"]",
        "\"sales_queue\" -> \"voicemail\" [label=\"timeout, exit, no_agents, full\"]",
        "\"support_queue\" -> \"voicemail\" [label=\"timeout, exit, no_agents, full\"]",
        "\"voicemail\" -> \"goodbye\" [label=\"done\"]",
        "\"closed\" -> \"voicemail\" [label=\"next\"]",
    ] {
        assert!(text.contains(edge), "{edge} missing:\n{text}");
    }
    assert_eq!(text.matches(" -> ").count(), 11);
    assert!(text.contains("queue: sales"));
    assert!(text.contains("\\nGET https://crm.example/customers/"));
}

#[test]
fn the_call_memory_fallback_is_an_edge_of_its_own() {
    let flow = build(
        "main",
        &[
            ("sales_queue", &|id| {
                let mut kind = queue(id, "sales");
                if let NodeKind::Queue {
                    agent_unavailable, ..
                } = &mut kind
                {
                    *agent_unavailable = Some(id("personal"));
                }
                kind
            }),
            ("voicemail", &|id| NodeKind::Voicemail {
                prompts: p(&["leave_message"]),
                beep: true,
                max_length: Duration::from_secs(120),
                mailbox: "sales".into(),
                done: id("personal"),
            }),
            ("personal", &|_| NodeKind::Hangup {
                cause: HangupCause::Busy,
            }),
        ],
    );
    let text = dot(&flow);
    assert!(
        text.contains("\"sales_queue\" -> \"personal\" [label=\"agent_unavailable\"]"),
        "{text}"
    );
    assert!(
        text.contains(
            "\"sales_queue\" -> \"voicemail\" [label=\"timeout, exit, no_agents, full\"]"
        ),
        "{text}"
    );
    assert!(check_xml(&svg(&flow)) > 0);
}

#[test]
fn dot_escapes_quotes_and_backslashes() {
    let flow = build(
        "q",
        &[
            ("say \"hi\"", &|id| NodeKind::Set {
                assignments: vec![("x".into(), Template("a\\b".into()))],
                next: id("end"),
            }),
            ("end", &|_| NodeKind::Return),
        ],
    );
    let text = dot(&flow);
    assert!(text.contains("\"say \\\"hi\\\"\" [label=\"say \\\"hi\\\"\\n[set]\\nx = a\\\\b\""));
}

#[test]
fn svg_is_well_formed_and_names_every_node() {
    let flow = demo();
    let text = svg(&flow);
    assert!(check_xml(&text) > flow.nodes.len());
    for node in &flow.nodes {
        assert!(
            text.contains(&format!(">{}</tspan>", node.name)),
            "{}",
            node.name
        );
    }
    assert!(text.contains(">no_input, invalid<") || text.contains("no_input, invalid</"));
}

#[test]
fn svg_draws_twenty_nodes_with_cycles() {
    // A chain of menus, each able to go back to the first: cycles and long edges.
    let names: Vec<String> = (0..20).map(|i| format!("menu_{i}")).collect();
    let kinds: Vec<Box<MakeKind>> = (0..20)
        .map(|i| {
            let next = format!("menu_{}", (i + 1) % 20);
            let skip = format!("menu_{}", (i + 3) % 20);
            Box::new(move |id: &dyn Fn(&str) -> NodeId| NodeKind::Menu {
                prompts: vec!["menu".into()],
                choices: vec![('1', id(&next)), ('2', id(&skip))],
                timeout: Duration::from_secs(5),
                retries: 1,
                no_input_prompts: vec![],
                invalid_prompts: vec![],
                no_input: id("menu_0"),
                invalid: id("menu_0"),
            }) as Box<MakeKind>
        })
        .collect();
    let nodes: Vec<(&str, &MakeKind)> = names
        .iter()
        .zip(&kinds)
        .map(|(n, k)| (n.as_str(), k.as_ref()))
        .collect();
    let flow = build("big", &nodes);
    let text = svg(&flow);
    check_xml(&text);
    for name in &names {
        assert!(text.contains(&format!(">{name}</tspan>")), "{name}");
    }
}

#[test]
fn svg_of_an_empty_flow_is_still_a_document() {
    let mut flow = demo();
    flow.nodes.clear();
    check_xml(&svg(&flow));
}
