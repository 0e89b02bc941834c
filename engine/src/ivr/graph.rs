//! Pictures of a flow: Graphviz DOT text, and an SVG drawn here (with the `layout-rs` crate) so
//! `switchboard flow graph` needs no system Graphviz.
//!
//! Each node is a box labelled with its name, its type and the options an admin looks for
//! (prompts, queue, calendar, variable…); each edge is an exit, labelled with the exit's name
//! (`1`, `no_input`, `open`…). Exits of one node that lead to the same target share one edge
//! with the names joined, so a menu whose `no_input` and `invalid` both go to `goodbye` stays
//! readable.
use super::model::{DialTarget, Flow, HangupCause, HttpMethod, NodeId, NodeKind};
use layout::backends::svg::SVGWriter;
use layout::core::base::Orientation;
use layout::core::color::Color;
use layout::core::style::StyleAttr;
use layout::std_shapes::shapes::{Arrow, Element, ShapeKind};
use layout::topo::layout::VisualGraph;
use std::fmt::Write as _;
use std::time::Duration;

/// The flow as a Graphviz `digraph`, top to bottom, the start node drawn bold.
pub fn dot(flow: &Flow) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph {} {{", quote(&flow.name));
    out.push_str("  rankdir=TB;\n");
    out.push_str("  node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=10];\n");
    for (i, node) in flow.nodes.iter().enumerate() {
        let bold = if NodeId(i as u32) == flow.start {
            ", penwidth=2"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  {} [label={}{bold}];",
            quote(&node.name),
            quote(&label(flow, NodeId(i as u32)))
        );
    }
    for (from, to, names) in edges(flow) {
        let _ = writeln!(
            out,
            "  {} -> {} [label={}];",
            quote(&flow.node(from).name),
            quote(&flow.node(to).name),
            quote(&names)
        );
    }
    out.push_str("}\n");
    out
}

/// The flow drawn as a standalone SVG document (layered top to bottom, the start node on
/// top; cycles such as "invalid → back to the menu" are drawn as upward edges).
pub fn svg(flow: &Flow) -> String {
    let mut graph = VisualGraph::new(Orientation::TopToBottom);
    let handles: Vec<_> = (0..flow.nodes.len())
        .map(|i| {
            let id = NodeId(i as u32);
            let text = label(flow, id);
            let shape = ShapeKind::new_box(&text);
            let width = if id == flow.start { 3 } else { 1 };
            let look = StyleAttr::new(
                Color::fast("black"),
                width,
                Some(Color::fast(fill(&flow.node(id).kind))),
                8,
                14,
            );
            let size = layout::std_shapes::render::get_shape_size(
                Orientation::TopToBottom,
                &shape,
                14,
                false,
            );
            graph.add_node(Element::create(shape, look, Orientation::LeftToRight, size))
        })
        .collect();
    for (from, to, names) in edges(flow) {
        graph.add_edge(
            Arrow::simple(&names),
            handles[from.0 as usize],
            handles[to.0 as usize],
        );
    }
    let mut writer = SVGWriter::new();
    if !flow.nodes.is_empty() {
        graph.do_it(false, false, false, &mut writer);
    }
    writer.finalize()
}

/// A node's exits in a stable order: (exit name, target).
pub fn exits(kind: &NodeKind) -> Vec<(String, NodeId)> {
    let named = |pairs: &[(&str, NodeId)]| -> Vec<(String, NodeId)> {
        pairs.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect()
    };
    match kind {
        NodeKind::Play { next, .. } | NodeKind::Set { next, .. } => named(&[("next", *next)]),
        NodeKind::Menu {
            choices,
            no_input,
            invalid,
            ..
        } => {
            let mut out: Vec<_> = choices.iter().map(|(k, t)| (k.to_string(), *t)).collect();
            out.extend(named(&[("no_input", *no_input), ("invalid", *invalid)]));
            out
        }
        NodeKind::Collect {
            ok,
            no_input,
            invalid,
            ..
        } => named(&[("ok", *ok), ("no_input", *no_input), ("invalid", *invalid)]),
        NodeKind::Hours { open, closed, .. } => named(&[("open", *open), ("closed", *closed)]),
        NodeKind::Switch { cases, default } => {
            let mut out: Vec<_> = cases
                .iter()
                .map(|(expr, t)| (format!("if {}", expr.0), *t))
                .collect();
            out.push(("default".to_owned(), *default));
            out
        }
        NodeKind::Http { ok, error, .. } => named(&[("ok", *ok), ("error", *error)]),
        NodeKind::Queue {
            after_agent,
            timeout,
            exit,
            no_agents,
            full,
            agent_unavailable,
            ..
        } => {
            let mut out = Vec::new();
            if let Some(after) = after_agent {
                out.push(("after_agent".to_owned(), *after));
            }
            out.extend(named(&[
                ("timeout", *timeout),
                ("exit", *exit),
                ("no_agents", *no_agents),
                ("full", *full),
            ]));
            // Without its own exit the fallback is `no_agents`, already drawn.
            if let Some(fallback) = agent_unavailable {
                out.push(("agent_unavailable".to_owned(), *fallback));
            }
            out
        }
        NodeKind::Dial {
            answered,
            no_answer,
            busy,
            failed,
            ..
        } => named(&[
            ("answered", *answered),
            ("no_answer", *no_answer),
            ("busy", *busy),
            ("failed", *failed),
        ]),
        NodeKind::Bridge {
            returned, failed, ..
        } => named(&[("returned", *returned), ("failed", *failed)]),
        NodeKind::Voicemail { done, .. } | NodeKind::Survey { done, .. } => {
            named(&[("done", *done)])
        }
        NodeKind::Subflow { next, .. } => named(&[("next", *next)]),
        NodeKind::Goto { .. } | NodeKind::Return | NodeKind::Hangup { .. } => Vec::new(),
    }
}

/// The node's type as written in YAML.
pub fn type_name(kind: &NodeKind) -> &'static str {
    match kind {
        NodeKind::Play { .. } => "play",
        NodeKind::Menu { .. } => "menu",
        NodeKind::Collect { .. } => "collect",
        NodeKind::Hours { .. } => "hours",
        NodeKind::Switch { .. } => "switch",
        NodeKind::Set { .. } => "set",
        NodeKind::Http { .. } => "http",
        NodeKind::Queue { .. } => "queue",
        NodeKind::Dial { .. } => "dial",
        NodeKind::Bridge { .. } => "bridge",
        NodeKind::Voicemail { .. } => "voicemail",
        NodeKind::Survey { .. } => "survey",
        NodeKind::Goto { .. } => "goto",
        NodeKind::Subflow { .. } => "subflow",
        NodeKind::Return => "return",
        NodeKind::Hangup { .. } => "hangup",
    }
}

/// Edges grouped by (from, to), names joined with `, `, in node order then exit order.
fn edges(flow: &Flow) -> Vec<(NodeId, NodeId, String)> {
    let mut out: Vec<(NodeId, NodeId, String)> = Vec::new();
    for (i, node) in flow.nodes.iter().enumerate() {
        let from = NodeId(i as u32);
        for (name, to) in exits(&node.kind) {
            match out.iter_mut().find(|(f, t, _)| *f == from && *t == to) {
                Some((_, _, names)) => {
                    names.push_str(", ");
                    names.push_str(&name);
                }
                None => out.push((from, to, name)),
            }
        }
    }
    out
}

/// Name, `type`, then one line per key option; long values are cut so boxes stay narrow.
fn label(flow: &Flow, id: NodeId) -> String {
    let node = flow.node(id);
    let mut lines = vec![node.name.clone(), format!("[{}]", type_name(&node.kind))];
    let prompts = |p: &[String]| format!("prompt: {}", p.join(", "));
    match &node.kind {
        NodeKind::Play {
            prompts: p,
            barge_in,
            ..
        } => {
            lines.push(prompts(p));
            if *barge_in {
                lines.push("barge-in".to_owned());
            }
        }
        NodeKind::Menu {
            prompts: p,
            timeout,
            retries,
            ..
        } => {
            lines.push(prompts(p));
            lines.push(format!("timeout {}, retries {retries}", secs(*timeout)));
        }
        NodeKind::Collect {
            variable,
            min_digits,
            max_digits,
            end_key,
            sensitive,
            ..
        } => {
            let mut line = format!("into {variable}, {min_digits}-{max_digits} digits");
            if let Some(key) = end_key {
                let _ = write!(line, ", end {key}");
            }
            lines.push(line);
            if *sensitive {
                lines.push("sensitive".to_owned());
            }
        }
        NodeKind::Hours { calendar, .. } => lines.push(format!("calendar: {calendar}")),
        NodeKind::Switch { .. } => {}
        NodeKind::Set { assignments, .. } => {
            for (var, template) in assignments {
                lines.push(format!("{var} = {}", template.0));
            }
        }
        NodeKind::Http { method, url, .. } => {
            let method = match method {
                HttpMethod::Get => "GET",
                HttpMethod::Post => "POST",
                HttpMethod::Put => "PUT",
            };
            lines.push(format!("{method} {}", url.0));
        }
        NodeKind::Queue {
            queue,
            max_wait,
            priority,
            ..
        } => {
            lines.push(format!("queue: {queue}"));
            lines.push(format!("max wait {}", secs(*max_wait)));
            if let Some(p) = priority {
                lines.push(format!("priority: {}", p.0));
            }
        }
        NodeKind::Dial {
            target,
            ring_timeout,
            ..
        } => {
            lines.push(match target {
                DialTarget::Extension(t) => format!("extension {}", t.0),
                DialTarget::Number { number, trunk } => match trunk {
                    Some(trunk) => format!("number {} via {trunk}", number.0),
                    None => format!("number {}", number.0),
                },
                DialTarget::Uri(t) => format!("uri {}", t.0),
            });
            lines.push(format!("ring {}", secs(*ring_timeout)));
        }
        NodeKind::Bridge { uri, .. } => lines.push(format!("uri {}", uri.0)),
        NodeKind::Voicemail {
            mailbox,
            max_length,
            ..
        } => lines.push(format!("box {mailbox}, max {}", secs(*max_length))),
        NodeKind::Survey {
            prompts: p, second, ..
        } => {
            lines.push(prompts(p));
            if second.is_some() {
                lines.push("two questions".to_owned());
            }
        }
        NodeKind::Goto { flow, node } => lines.push(match node {
            Some(node) => format!("to flow {flow}, node {node}"),
            None => format!("to flow {flow}"),
        }),
        NodeKind::Subflow { flow, .. } => lines.push(format!("runs flow {flow}")),
        NodeKind::Return => {}
        NodeKind::Hangup { cause } => lines.push(
            match cause {
                HangupCause::Normal => "cause: normal",
                HangupCause::Busy => "cause: busy",
                HangupCause::Rejected => "cause: rejected",
                HangupCause::Unavailable => "cause: unavailable",
            }
            .to_owned(),
        ),
    }
    lines
        .into_iter()
        .map(|l| shorten(&l, 40))
        .collect::<Vec<_>>()
        .join("\n")
}

fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}ms", ms)
    }
}

fn shorten(line: &str, max: usize) -> String {
    if line.chars().count() <= max {
        line.to_owned()
    } else {
        let mut s: String = line.chars().take(max - 1).collect();
        s.push('…');
        s
    }
}

fn fill(kind: &NodeKind) -> &'static str {
    match kind {
        NodeKind::Menu { .. } | NodeKind::Collect { .. } | NodeKind::Survey { .. } => "lightyellow",
        NodeKind::Queue { .. } | NodeKind::Dial { .. } | NodeKind::Bridge { .. } => "lightblue",
        NodeKind::Hangup { .. } | NodeKind::Return | NodeKind::Goto { .. } => "lightgray",
        _ => "white",
    }
}

/// A DOT double-quoted string: backslash and quote escaped, newlines as `\n`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            _ => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
pub(crate) mod tests;
