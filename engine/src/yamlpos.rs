//! Where each key path of a block-style YAML document starts.
//!
//! serde_yaml keeps no positions past deserialization, so this reads the text a second time, just far
//! enough to know the structure: indentation, `key:` lines, `- ` items and one-line flow collections
//! (`[a, b]`, `{k: v}`). Block scalars (`|`, `>`) and multi-line plain scalars are skipped. It never fails:
//! on input it does not understand it records less, and positions fall back to the nearest known parent.
//!
//! Shared by the configuration and the IVR flow validator.

/// One recorded node: a mapping key or a sequence item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// `sip.listen[1].transport`; items are `[n]`, keys are joined with `.`.
    pub path: String,
    /// 1-based, like serde_yaml's.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `first_on_line`: nothing but indentation precedes the key (no `- `);
    /// `inline_value`: the value starts on the key's line.
    Key {
        first_on_line: bool,
        inline_value: bool,
    },
    Item,
}

#[derive(Debug, Default)]
pub(crate) struct Index {
    /// In document order.
    pub entries: Vec<Entry>,
}

impl Index {
    pub fn build(text: &str) -> Index {
        let mut builder = Builder::default();
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        for (n, line) in text.lines().enumerate() {
            builder.line(n + 1, line);
        }
        Index {
            entries: builder.entries,
        }
    }

    /// The position of the `n`-th (0-based) occurrence of `path`; a second occurrence is a duplicate key.
    pub fn occurrence(&self, path: &str, n: usize) -> Option<(usize, usize)> {
        self.entries
            .iter()
            .filter(|e| e.path == path)
            .nth(n)
            .map(|e| (e.line, e.column))
    }

    /// The position of `path`, or of its nearest recorded parent (a field left at its default has no
    /// line of its own), or the start of the document.
    pub fn nearest(&self, path: &str) -> (usize, usize) {
        let mut path = path;
        loop {
            if let Some(pos) = self.occurrence(path, 0) {
                return pos;
            }
            match parent(path) {
                Some(p) => path = p,
                None => return (1, 1),
            }
        }
    }

    /// The innermost entry on `line` that starts at or before `column`.
    pub fn field_at(&self, line: usize, column: usize) -> Option<&str> {
        let on_line = self.entries.iter().filter(|e| e.line == line);
        on_line
            .clone()
            .filter(|e| e.column <= column)
            .max_by_key(|e| e.column)
            .or_else(|| on_line.min_by_key(|e| e.column))
            .map(|e| e.path.as_str())
    }
}

pub(crate) fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

pub(crate) fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        if let Some(i) = path.rfind('[') {
            return Some(&path[..i]);
        }
    }
    Some(path.rfind('.').map_or("", |i| &path[..i]))
}

const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameKind {
    Map,
    Seq,
}

/// An open block collection: its indentation (column of its keys or dashes, 0-based) and path.
#[derive(Debug)]
struct Frame {
    indent: usize,
    kind: FrameKind,
    path: String,
    next_item: usize,
}

impl Frame {
    fn new(indent: usize, kind: FrameKind, path: String) -> Frame {
        Frame {
            indent,
            kind,
            path,
            next_item: 0,
        }
    }
}

#[derive(Debug, Default)]
struct Builder {
    entries: Vec<Entry>,
    stack: Vec<Frame>,
    /// A key or item with nothing after it: its block value follows on the next lines.
    /// (path, column of the key or dash)
    pending: Option<(String, usize)>,
    /// Inside a block scalar owned by a node at this column: skip lines indented deeper.
    block_scalar: Option<usize>,
}

impl Builder {
    fn line(&mut self, line_no: usize, line: &str) {
        let code = strip_comment(line).trim_end();
        let indent = code.len() - code.trim_start_matches(' ').len();
        let body = &code[indent..];
        if let Some(owner) = self.block_scalar {
            if body.is_empty() || indent > owner {
                return;
            }
            self.block_scalar = None;
        }
        if body.is_empty() {
            return;
        }
        if indent == 0
            && (body == "---" || body.starts_with("--- ") || body == "..." || body.starts_with('%'))
        {
            self.stack.clear();
            self.pending = None;
            return;
        }
        let item = is_item(body);
        if let Some((path, owner)) = self.pending.take() {
            if item && indent >= owner {
                self.stack.push(Frame::new(indent, FrameKind::Seq, path));
            } else if !item && indent > owner {
                self.stack.push(Frame::new(indent, FrameKind::Map, path));
            }
        }
        while let Some(top) = self.stack.last() {
            let closes = top.indent > indent
                || (top.indent == indent && top.kind == FrameKind::Seq && !item);
            if !closes {
                break;
            }
            self.stack.pop();
        }
        if self.stack.is_empty() {
            let kind = if item { FrameKind::Seq } else { FrameKind::Map };
            self.stack.push(Frame::new(indent, kind, String::new()));
        }
        // Deeper than the innermost open collection: a continued multi-line scalar.
        if self.stack.last().map(|f| f.indent) != Some(indent) {
            return;
        }
        self.node(line_no, code, indent, 0);
    }

    /// The node starting at byte `col` of `code` (a comment-free line); the innermost frame is at `col`.
    /// `depth` counts the `- ` before it on this line.
    fn node(&mut self, line_no: usize, code: &str, col: usize, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        let first_on_line = depth == 0;
        let body = &code[col..];
        let Some(top) = self.stack.last_mut() else {
            return;
        };
        if is_item(body) {
            if top.kind != FrameKind::Seq {
                return;
            }
            let path = format!("{}[{}]", top.path, top.next_item);
            top.next_item += 1;
            self.push(path.clone(), line_no, code, col, Kind::Item);
            let after_dash = &body[1..];
            let rest = after_dash.trim_start();
            let rest_col = col + 1 + (after_dash.len() - rest.len());
            if rest.is_empty() {
                self.pending = Some((path, col));
            } else if is_item(rest) {
                self.stack.push(Frame::new(rest_col, FrameKind::Seq, path));
                self.node(line_no, code, rest_col, depth + 1);
            } else if split_key(rest).is_some() {
                self.stack.push(Frame::new(rest_col, FrameKind::Map, path));
                self.node(line_no, code, rest_col, depth + 1);
            } else {
                self.value(line_no, code, rest_col, &path);
            }
            return;
        }
        if top.kind != FrameKind::Map {
            return;
        }
        let Some((key, after_colon)) = split_key(body) else {
            return;
        };
        let path = join(&top.path, &key);
        let value = body[after_colon..].trim_start();
        let value_col = col + after_colon + (body[after_colon..].len() - value.len());
        let kind = Kind::Key {
            first_on_line,
            inline_value: !value.is_empty(),
        };
        self.push(path.clone(), line_no, code, col, kind);
        if value.is_empty() {
            self.pending = Some((path, col));
        } else if value.starts_with('|') || value.starts_with('>') {
            self.block_scalar = Some(col);
        } else {
            self.value(line_no, code, value_col, &path);
        }
    }

    /// An inline value at byte `col`; only flow collections contain further nodes.
    fn value(&mut self, line_no: usize, code: &str, col: usize, path: &str) {
        if matches!(code.as_bytes().get(col), Some(b'[' | b'{')) {
            self.flow(line_no, code, col, path, 0);
        }
    }

    /// A flow collection opening at byte `pos`; returns the byte after it (or the end of the line).
    fn flow(
        &mut self,
        line_no: usize,
        code: &str,
        mut pos: usize,
        path: &str,
        depth: usize,
    ) -> usize {
        let b = code.as_bytes();
        // serde_yaml refuses deeper nesting anyway; this only keeps the stack bounded.
        if depth > MAX_DEPTH {
            return b.len();
        }
        let is_seq = b[pos] == b'[';
        pos += 1;
        let mut index = 0;
        loop {
            pos = skip_spaces(b, pos);
            let start = pos;
            match b.get(pos) {
                None => return pos,
                // Either bracket ends the collection: mismatched input must not stall the scan.
                Some(b']' | b'}') => return pos + 1,
                Some(b',') => {
                    pos += 1;
                    continue;
                }
                _ => {}
            }
            let child = if is_seq {
                let child = format!("{path}[{index}]");
                index += 1;
                self.push(child.clone(), line_no, code, pos, Kind::Item);
                child
            } else {
                let key_end = scalar_end(b, pos, true);
                let key = unquote(&code[pos..key_end]);
                let child = join(path, &key);
                let kind = Kind::Key {
                    first_on_line: false,
                    inline_value: true,
                };
                self.push(child.clone(), line_no, code, pos, kind);
                pos = skip_spaces(b, key_end);
                if b.get(pos) != Some(&b':') {
                    pos = pos.max(start + 1);
                    continue;
                }
                pos = skip_spaces(b, pos + 1);
                child
            };
            pos = match b.get(pos) {
                Some(b'[' | b'{') => self.flow(line_no, code, pos, &child, depth + 1),
                _ => scalar_end(b, pos, false),
            };
            if pos >= b.len() {
                return b.len();
            }
            pos = pos.max(start + 1);
        }
    }

    fn push(&mut self, path: String, line: usize, code: &str, byte_col: usize, kind: Kind) {
        let column = code[..byte_col].chars().count() + 1;
        self.entries.push(Entry {
            path,
            line,
            column,
            kind,
        });
    }
}

fn is_item(body: &str) -> bool {
    body == "-" || body.starts_with("- ")
}

/// `key: value` → (key, byte offset after the colon). Quoted keys are unquoted.
fn split_key(body: &str) -> Option<(String, usize)> {
    let b = body.as_bytes();
    let key_end = match b.first()? {
        b'"' | b'\'' => quoted_end(b, 0),
        b'[' | b'{' | b'!' | b'&' | b'*' | b'?' | b'|' | b'>' | b'%' | b'@' | b'`' => return None,
        _ => {
            let colon = (0..b.len())
                .find(|&i| b[i] == b':' && matches!(b.get(i + 1), None | Some(b' ')))?;
            return Some((body[..colon].trim_end().to_owned(), colon + 1));
        }
    };
    let colon = skip_spaces(b, key_end);
    if b.get(colon) == Some(&b':') && matches!(b.get(colon + 1), None | Some(b' ')) {
        Some((unquote(&body[..key_end]), colon + 1))
    } else {
        None
    }
}

/// The byte after a scalar starting at `pos` inside a flow collection.
fn scalar_end(b: &[u8], pos: usize, is_key: bool) -> usize {
    if matches!(b.get(pos), Some(b'"' | b'\'')) {
        return quoted_end(b, pos);
    }
    let mut i = pos;
    while i < b.len() {
        match b[i] {
            b',' | b']' | b'}' => break,
            b':' if is_key && matches!(b.get(i + 1), None | Some(b' ' | b',' | b'}' | b']')) => {
                break
            }
            _ => i += 1,
        }
    }
    // Trailing spaces are not part of the scalar.
    while i > pos && b[i - 1] == b' ' {
        i -= 1;
    }
    i
}

/// The byte after the quoted scalar opening at `pos` (or the end of the line if it does not close).
fn quoted_end(b: &[u8], pos: usize) -> usize {
    let quote = b[pos];
    let mut i = pos + 1;
    while i < b.len() {
        if quote == b'"' && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == quote {
            if quote == b'\'' && b.get(i + 1) == Some(&b'\'') {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        let mut out = String::new();
        let mut chars = s[1..s.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            } else {
                out.push(c);
            }
        }
        out
    } else if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        s[1..s.len() - 1].replace("''", "'")
    } else {
        s.to_owned()
    }
}

fn skip_spaces(b: &[u8], mut pos: usize) -> usize {
    while b.get(pos) == Some(&b' ') {
        pos += 1;
    }
    pos
}

/// The line without its comment. A `#` starts a comment at the start of the line or after
/// whitespace, outside quotes; a quote opens a quoted scalar only where a token starts.
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let token_start = i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'[' | b'{' | b',');
        match b[i] {
            b'#' if i == 0 || matches!(b[i - 1], b' ' | b'\t') => return &line[..i],
            b'"' | b'\'' if token_start => i = quoted_end(b, i),
            _ => i += 1,
        }
    }
    line
}

/// A serde_yaml error placed on the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placed {
    /// The key path (`sip.listen[1].transport`); empty for the document itself.
    pub field: String,
    pub line: usize,
    pub column: usize,
    /// serde_yaml's message without its path and position.
    pub message: String,
}

/// serde_yaml renders its errors as `path: message at line L column C`; take that apart and let
/// the index place the error on the offending key (an unknown or duplicate key where it is
/// written, a bad value on its key).
pub(crate) fn place_serde_error(index: &Index, err: &serde_yaml::Error) -> Placed {
    let serde_pos = err.location().map(|l| (l.line(), l.column()));
    let mut text = err.to_string();
    if let Some((line, column)) = serde_pos {
        text = text.replacen(&format!(" at line {line} column {column}"), "", 1);
    }
    let (path, message) = split_serde_path(&text);
    let (field, key_pos) = if let Some(name) = backticked(message, "unknown field `") {
        let field = join(path, name);
        let pos = index.occurrence(&field, 0);
        (field, pos)
    } else if let Some(name) = backticked(message, "duplicate field `") {
        let field = join(path, name);
        let pos = index.occurrence(&field, 1);
        (field, pos)
    } else if !path.is_empty() {
        // The key precedes (or shares the line of) the value serde_yaml points at.
        let pos = index
            .occurrence(path, 0)
            .filter(|&(key_line, _)| serde_pos.is_none_or(|(line, _)| key_line <= line));
        (path.to_owned(), pos)
    } else {
        let field = serde_pos
            .and_then(|(line, column)| index.field_at(line, column))
            .unwrap_or_default()
            .to_owned();
        (field, None)
    };
    let (line, column) = key_pos.or(serde_pos).unwrap_or((1, 1));
    Placed {
        field,
        line,
        column,
        message: message.to_owned(),
    }
}

/// Splits `sip.listen[1].transport: unknown variant …` into path and message; messages about
/// the document root come without a path.
pub(crate) fn split_serde_path(text: &str) -> (&str, &str) {
    if let Some((path, message)) = text.split_once(": ") {
        let is_path = !path.is_empty()
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.[]?".contains(c));
        if is_path {
            return (path, message);
        }
    }
    ("", text)
}

/// The name in `` unknown field `name`, expected … ``.
pub(crate) fn backticked<'m>(message: &'m str, prefix: &str) -> Option<&'m str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(index: &Index, path: &str) -> (usize, usize) {
        index
            .occurrence(path, 0)
            .unwrap_or_else(|| panic!("{path} not found in {:#?}", index.entries))
    }

    #[test]
    fn nested_maps_sequences_and_flow_lists() {
        let text = "\
# comment: not a key
sip:
  listen:
    - transport: udp   # trailing
      address: \"127.0.0.1:5060\"
    - transport: tcp
      address: '127.0.0.1:5060'
  domain: switchboard
auth:
  trusted: [10.0.0.0/8, \"192.168.0.0/16\"]
  lockout: {max_failures: 5, window_s: 60}
accounts:
- user: \"1001\"
  password: 'it''s # not a comment'
- user: '1002'
  \"display_name\": Desk # two
trunks: []
";
        let index = Index::build(text);
        assert_eq!(pos(&index, "sip"), (2, 1));
        assert_eq!(pos(&index, "sip.listen"), (3, 3));
        assert_eq!(pos(&index, "sip.listen[0]"), (4, 5));
        assert_eq!(pos(&index, "sip.listen[0].transport"), (4, 7));
        assert_eq!(pos(&index, "sip.listen[0].address"), (5, 7));
        assert_eq!(pos(&index, "sip.listen[1].transport"), (6, 7));
        assert_eq!(pos(&index, "sip.listen[1].address"), (7, 7));
        assert_eq!(pos(&index, "sip.domain"), (8, 3));
        assert_eq!(pos(&index, "auth.trusted[0]"), (10, 13));
        assert_eq!(pos(&index, "auth.trusted[1]"), (10, 25));
        assert_eq!(pos(&index, "auth.lockout.max_failures"), (11, 13));
        assert_eq!(pos(&index, "auth.lockout.window_s"), (11, 30));
        assert_eq!(pos(&index, "accounts[0]"), (13, 1));
        assert_eq!(pos(&index, "accounts[0].user"), (13, 3));
        assert_eq!(pos(&index, "accounts[0].password"), (14, 3));
        assert_eq!(pos(&index, "accounts[1].user"), (15, 3));
        assert_eq!(pos(&index, "accounts[1].display_name"), (16, 3));
        assert_eq!(pos(&index, "trunks"), (17, 1));
        assert_eq!(
            index
                .entries
                .iter()
                .filter(|e| e.path.contains("comment"))
                .count(),
            0
        );
    }

    #[test]
    fn block_scalars_and_continuations_are_skipped() {
        let text = "a:\n  note: |\n    x: 1\n    - y\n  b: 2\nc: plain\n  continued: no\nd: 3\n";
        let index = Index::build(text);
        let paths: Vec<&str> = index.entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["a", "a.note", "a.b", "c", "d"]);
    }

    #[test]
    fn nearest_falls_back_to_parents() {
        let index = Index::build("registrar:\n  max_expires_s: 10\n");
        assert_eq!(index.nearest("registrar.min_expires_s"), (1, 1));
        assert_eq!(index.nearest("registrar.max_expires_s"), (2, 3));
        assert_eq!(index.nearest("accounts[3].user"), (1, 1));
    }

    #[test]
    fn duplicates_are_recorded_in_order() {
        let index = Index::build("sip:\n  domain: a\n  domain: b\n");
        assert_eq!(index.occurrence("sip.domain", 1), Some((3, 3)));
    }
}
