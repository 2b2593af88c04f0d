//! Chat templates: a model's own chat format, rendered as transformers' `apply_chat_template`
//! renders it (Jinja through minijinja, with transformers' environment: `trim_blocks`,
//! `lstrip_blocks`, loop controls, `raise_exception`, `strftime_now`, a `tojson` that writes what
//! Python's `json.dumps` writes, Python's string methods, `{% generation %}` blocks), and chats
//! tokenised with a mask over the assistant turns. The assistant text is found by rendering the
//! chat message by message: each render must extend the one before, or the chat is refused (the
//! template rewrites earlier turns, as Qwen3's drops their `<think>` part, or its generation prompt
//! is not how it begins an assistant turn). A reply ends at the first special token the template
//! writes after it. Reads the template that sits beside a `tokenizer.json`
//! (`chat_template.jinja`, or `chat_template` in `tokenizer_config.json`). Knows messages, text and
//! tokens; nothing of the reasoning switch, tasks or training.

use std::ops::Range;
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde::Serialize;
use serde_json::Value as Json;

use super::{ChatSpec, Tokenizer, TokenizerError};

/// Where transformers keeps a tokenizer's settings, the chat template among them.
pub const CONFIG_FILE: &str = "tokenizer_config.json";
/// Where transformers (since 4.47) saves a tokenizer's chat template; it wins over the config's.
pub const TEMPLATE_FILE: &str = "chat_template.jinja";

/// The name the template is compiled under; errors say `(in chat_template:LINE)`.
const NAME: &str = "chat_template";

/// One chat message as templates see it (`message['role']`, `message['content']`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Message<'a> {
    pub role: &'a str,
    pub content: &'a str,
}

impl<'a> Message<'a> {
    pub fn new(role: &'a str, content: &'a str) -> Self {
        Self { role, content }
    }
}

/// A chat as token ids, with `trained[i]` true where token `i` is assistant text (or the token
/// that ends an assistant turn): the only tokens a chat is trained on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenizedChat {
    pub tokens: Vec<u32>,
    pub trained: Vec<bool>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChatTemplateError {
    #[error("the chat template does not parse: {0}")]
    Syntax(String),
    #[error("the chat template cannot render {what}: {problem}")]
    Render { what: String, problem: String },
    #[error(
        "the chat template's renders of a chat message by message do not extend each other: {problem}. tessera finds the assistant text that way, so it cannot split this chat into prompt and reply; templates that rewrite earlier turns (Qwen3's drops the <think> part of assistant turns before the last user message) or whose generation prompt is not how they begin an assistant turn (DeepSeek-R1's opens <think> there) cannot be trained on"
    )]
    NotPrefix { problem: String },
    #[error(
        "the chat template does not write the assistant's text {content:?} as given; it renders the turn as {rendered:?}"
    )]
    ContentChanged { content: String, rendered: String },
    #[error(
        "the chat template writes {suffix:?} after an assistant turn's text, with no special token of the tokenizer in it; tessera needs one (as `<|im_end|>` or `<|eot_id|>`) to train replies to end and to stop generation at"
    )]
    NoEndOfTurn { suffix: String },
    #[error("assistant turn {turn} renders as {rendered:?}, without the end-of-turn token `{end}`")]
    TurnNotEnded { turn: usize, end: String, rendered: String },
    #[error(
        "chat templates need a byte-level BPE tokenizer (tokenizer.json or a GGUF file's); llama2.c and SentencePiece GGUF tokenizers are not supported"
    )]
    NotHf,
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
}

/// The token that ends an assistant turn, and its text.
#[derive(Clone, Debug)]
struct EndOfTurn {
    id: u32,
    text: String,
}

/// A compiled chat template with the special tokens it refers to and the token it ends
/// assistant turns with.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    end_of_turn: EndOfTurn,
}

/// What a template renders: transformers passes the messages, the generation switch, `tools`
/// and `documents` (`None` here) and the tokenizer's special tokens (absent ones stay undefined,
/// as there).
#[derive(Serialize)]
struct Context<'a> {
    messages: &'a [Message<'a>],
    add_generation_prompt: bool,
    tools: Option<()>,
    documents: Option<()>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bos_token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eos_token: Option<&'a str>,
}

/// The conversation rendered once when a template is loaded, to find how it ends a turn.
const PROBE: [Message<'static>; 3] = [
    Message {
        role: "system",
        content: "You are a helpful assistant.",
    },
    Message {
        role: "user",
        content: "What is 2+2?",
    },
    Message {
        role: "assistant",
        content: "2+2 is 4.",
    },
];

impl ChatTemplate {
    /// Compiles `spec`'s template and renders a probe conversation with it: a template that does
    /// not parse, calls something unknown, raises, or ends assistant turns without a special
    /// token of `tokenizer` is refused here, before any training.
    pub fn new(spec: &ChatSpec, tokenizer: &Tokenizer) -> Result<Self, ChatTemplateError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        // Jinja's `none is iterable` is false (minijinja's is true); templates test `tools` so.
        env.add_test("iterable", |v: &Value| !v.is_none() && v.try_iter().is_ok());
        env.add_template_owned(NAME, without_generation_tags(&spec.template))
            .map_err(|e| ChatTemplateError::Syntax(e.to_string()))?;
        let mut template = Self {
            env,
            bos_token: spec.bos_token.clone(),
            eos_token: spec.eos_token.clone(),
            end_of_turn: EndOfTurn {
                id: 0,
                text: String::new(),
            },
        };
        template.end_of_turn = template.find_end_of_turn(tokenizer)?;
        Ok(template)
    }

    /// The template's text for `messages`, with the assistant header after them when
    /// `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, ChatTemplateError> {
        let context = Context {
            messages,
            add_generation_prompt,
            tools: None,
            documents: None,
            bos_token: self.bos_token.as_deref(),
            eos_token: self.eos_token.as_deref(),
        };
        let render = |template: minijinja::Template| template.render(Serde(&context));
        self.env
            .get_template(NAME)
            .and_then(render)
            .map_err(|e| ChatTemplateError::Render {
                what: describe(messages, add_generation_prompt),
                problem: e.to_string(),
            })
    }

    /// The whole chat rendered, and the text of each assistant message in it: from the end of
    /// the generation prompt before it to the end of its own render. Every render of the first
    /// messages must be the start of the next one.
    pub fn assistant_spans(&self, messages: &[Message]) -> Result<(String, Vec<Range<usize>>), ChatTemplateError> {
        let full = self.render(messages, false)?;
        let mut spans = Vec::new();
        for (k, _) in messages.iter().enumerate().filter(|(_, m)| m.role == "assistant") {
            let before = self.render(&messages[..k], true)?;
            let through = self.render(&messages[..=k], false)?;
            if !through.starts_with(&before) {
                return Err(ChatTemplateError::NotPrefix {
                    problem: format!(
                        "the first {k} messages with the generation prompt render as text that the first {} messages do not start with ({})",
                        k + 1,
                        divergence(&before, &through)
                    ),
                });
            }
            if !full.starts_with(&through) {
                return Err(ChatTemplateError::NotPrefix {
                    problem: format!(
                        "the first {} messages render as text that the whole chat of {} messages does not start with ({})",
                        k + 1,
                        messages.len(),
                        divergence(&through, &full)
                    ),
                });
            }
            spans.push(before.len()..through.len());
        }
        Ok((full, spans))
    }

    /// The token ids a model continues to answer `messages`: their render with the generation
    /// prompt.
    pub fn encode_prompt(&self, tokenizer: &Tokenizer, messages: &[Message]) -> Result<Vec<u32>, ChatTemplateError> {
        Ok(tokenizer.encode(&self.render(messages, true)?, false)?)
    }

    /// The whole chat as token ids (the rendered text tokenised once, as inference sees it), with
    /// the assistant tokens marked: each assistant message's text through its end-of-turn token.
    /// Text the template writes after that token (ChatML's newline) is not trained.
    pub fn encode_chat(&self, tokenizer: &Tokenizer, messages: &[Message]) -> Result<TokenizedChat, ChatTemplateError> {
        let (text, spans) = self.assistant_spans(messages)?;
        let end = &self.end_of_turn.text;
        let trained = spans
            .into_iter()
            .enumerate()
            .map(|(turn, span)| match text[span.clone()].rfind(end.as_str()) {
                Some(at) => Ok(span.start..span.start + at + end.len()),
                None => Err(ChatTemplateError::TurnNotEnded {
                    turn: turn + 1,
                    end: end.clone(),
                    rendered: text[span].to_string(),
                }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let encoding = hf(tokenizer)?
            .encode(text.as_str(), false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        // Each token covers the text from where the one before ended to where it ends, so that
        // whitespace an offset trims away still belongs to a token.
        let mut covered = 0;
        let trained = encoding
            .get_offsets()
            .iter()
            .map(|&(_, token_end)| {
                let (start, end) = (covered, token_end.max(covered));
                covered = end;
                trained.iter().any(|r| end > r.start && start < r.end)
            })
            .collect();
        Ok(TokenizedChat {
            tokens: encoding.get_ids().to_vec(),
            trained,
        })
    }

    /// The token that ends an assistant turn (`<|im_end|>` in ChatML, `<|eot_id|>` in Llama 3):
    /// generation stops there.
    pub fn end_of_turn(&self) -> u32 {
        self.end_of_turn.id
    }

    /// The first special token after the probe's assistant text.
    fn find_end_of_turn(&self, tokenizer: &Tokenizer) -> Result<EndOfTurn, ChatTemplateError> {
        let (text, spans) = self.assistant_spans(&PROBE)?;
        let rendered = spans.first().map_or("", |span| &text[span.clone()]);
        let content = PROBE[2].content;
        let suffix = rendered
            .find(content)
            .map(|at| &rendered[at + content.len()..])
            .ok_or_else(|| ChatTemplateError::ContentChanged {
                content: content.to_string(),
                rendered: rendered.to_string(),
            })?;
        let inner = hf(tokenizer)?;
        let added = inner.get_added_tokens_decoder();
        inner
            .encode(suffix, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?
            .get_ids()
            .iter()
            .find_map(|id| added.get(id).filter(|t| t.special).map(|t| (*id, t.content.clone())))
            .map(|(id, text)| EndOfTurn { id, text })
            .ok_or_else(|| ChatTemplateError::NoEndOfTurn {
                suffix: suffix.to_string(),
            })
    }
}

/// The template with transformers' `{% generation %}` / `{% endgeneration %}` tags (which mark
/// assistant text for transformers' own masks and render their body unchanged) turned into
/// `{% if true %}` / `{% endif %}`, whitespace control kept; tessera finds the assistant text
/// from the renders instead.
fn without_generation_tags(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(at) = rest.find("{%") {
        out.push_str(&rest[..at]);
        let tag = &rest[at + 2..];
        match generation_tag(tag) {
            Some((replacement, len)) => {
                out.push_str(&replacement);
                rest = &tag[len..];
            }
            None => {
                out.push_str("{%");
                rest = tag;
            }
        }
    }
    out.push_str(rest);
    out
}

/// When `text` (what follows a `{%`) is a `generation` or `endgeneration` tag: the tag that
/// stands for it and how much of `text` it spans.
fn generation_tag(text: &str) -> Option<(String, usize)> {
    let (left, inner) = split_control(text);
    let inner = inner.trim_start();
    let end = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let keyword = match &inner[..end] {
        "generation" => "if true",
        "endgeneration" => "endif",
        _ => return None,
    };
    let (right, after) = split_control(inner[end..].trim_start());
    let tail = after.strip_prefix("%}")?;
    Some((format!("{{%{left} {keyword} {right}%}}"), text.len() - tail.len()))
}

/// A block tag's whitespace control sign (`-` or `+`) at the start of `text`, and the rest.
fn split_control(text: &str) -> (&str, &str) {
    match text.strip_prefix(['-', '+']) {
        Some(tail) => (&text[..1], tail),
        None => ("", text),
    }
}

fn hf(tokenizer: &Tokenizer) -> Result<&tokenizers::Tokenizer, ChatTemplateError> {
    match tokenizer {
        Tokenizer::Hf { inner, .. } => Ok(inner),
        Tokenizer::Llama2c(_) | Tokenizer::Spm { .. } => Err(ChatTemplateError::NotHf),
    }
}

/// "a chat of 3 messages (system, user, assistant) with the generation prompt".
fn describe(messages: &[Message], add_generation_prompt: bool) -> String {
    let roles: Vec<&str> = messages.iter().map(|m| m.role).collect();
    format!(
        "a chat of {} messages ({}){}",
        messages.len(),
        roles.join(", "),
        if add_generation_prompt {
            " with the generation prompt"
        } else {
            ""
        }
    )
}

/// Where two texts part: the character offset and a little of each from there.
fn divergence(a: &str, b: &str) -> String {
    let at = a
        .char_indices()
        .zip(b.chars())
        .find(|((_, x), y)| x != y)
        .map_or(a.len().min(b.len()), |((i, _), _)| i);
    let snippet = |s: &str| s[at..].chars().take(40).collect::<String>();
    format!("they part at byte {at}: {:?} against {:?}", snippet(a), snippet(b))
}

/// transformers' `raise_exception(message)`: the template refuses the chat.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(
        ErrorKind::InvalidOperation,
        format!("the template raised an exception: {message}"),
    ))
}

/// transformers' `strftime_now(format)`: the current date and time as Python's `strftime`
/// writes them, in UTC (transformers uses local time).
fn strftime_now(format: String) -> Result<String, Error> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("the clock is before 1970: {e}")))?;
    strftime(&format, now.as_secs() as i64)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Python's `strftime` for the directives chat templates use, at `seconds` after 1970 (UTC).
fn strftime(format: &str, seconds: i64) -> Result<String, Error> {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Civil date from the day count (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_march = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_march + 2) / 153;
    let day = doy_march - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let before_month = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334][(month - 1) as usize];
    let day_of_year = before_month + day + i64::from(leap && month > 2);
    let weekday = (days + 4).rem_euclid(7) as usize;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let month_name = MONTHS[(month - 1) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let directive = chars.next();
        let text = match directive {
            Some('Y') => year.to_string(),
            Some('y') => format!("{:02}", year.rem_euclid(100)),
            Some('m') => format!("{month:02}"),
            Some('d') => format!("{day:02}"),
            Some('j') => format!("{day_of_year:03}"),
            Some('B') => month_name.to_string(),
            Some('b') => month_name[..3].to_string(),
            Some('A') => WEEKDAYS[weekday].to_string(),
            Some('a') => WEEKDAYS[weekday][..3].to_string(),
            Some('H') => format!("{hour:02}"),
            Some('I') => format!("{:02}", (hour + 11) % 12 + 1),
            Some('p') => (if hour < 12 { "AM" } else { "PM" }).to_string(),
            Some('M') => format!("{minute:02}"),
            Some('S') => format!("{second:02}"),
            Some('%') => "%".to_string(),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: the directive %{} is not supported (supported: %Y %y %m %d %j %B %b %A %a %H %I %p %M %S %%)",
                        other.map(String::from).unwrap_or_default()
                    ),
                ));
            }
        };
        out.push_str(&text);
    }
    Ok(out)
}

/// transformers' `tojson` filter: Python's `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)` with those keywords (and `indent` also positionally).
/// Unlike Jinja's own filter it does not escape `<`, `>`, `&` or `'`.
fn tojson(value: &Value, indent: Option<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let bad = |what: String| Error::new(ErrorKind::InvalidOperation, format!("tojson: {what}"));
    let indent = match indent {
        Some(indent) => Some(indent),
        None => kwargs.get::<Option<Value>>("indent")?,
    };
    let indent = match indent.filter(|v| !v.is_none()) {
        None => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(n.max(0) as usize)),
            (_, Some(s)) => Some(s.to_string()),
            _ => return Err(bad(format!("indent must be a number or a string, got {v}"))),
        },
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let (item, key) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(other) => return Err(bad(format!("separators must be two strings, got {other:?}"))),
        None if indent.is_some() => (",".to_string(), ": ".to_string()),
        None => (", ".to_string(), ": ".to_string()),
    };
    let style = JsonStyle {
        indent,
        item,
        key,
        ensure_ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false),
    };
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value).map_err(|e| bad(format!("cannot write {value} as JSON: {e}")))?;
    let mut out = String::new();
    style.write(&mut out, &json, 0);
    Ok(Value::from_safe_string(out))
}

/// How Python's `json.dumps` lays out its output.
struct JsonStyle {
    indent: Option<String>,
    item: String,
    key: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

impl JsonStyle {
    fn write(&self, out: &mut String, value: &Json, level: usize) {
        match value {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Number(n) => out.push_str(&n.to_string()),
            Json::String(s) => self.write_string(out, s),
            Json::Array(items) => {
                let items: Vec<(Option<&str>, &Json)> = items.iter().map(|v| (None, v)).collect();
                self.write_container(out, ('[', ']'), &items, level);
            }
            Json::Object(map) => {
                let mut items: Vec<(Option<&str>, &Json)> = map.iter().map(|(k, v)| (Some(k.as_str()), v)).collect();
                if self.sort_keys {
                    items.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.write_container(out, ('{', '}'), &items, level);
            }
        }
    }

    fn write_container(
        &self,
        out: &mut String,
        (open, close): (char, char),
        items: &[(Option<&str>, &Json)],
        level: usize,
    ) {
        out.push(open);
        if items.is_empty() {
            out.push(close);
            return;
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                out.push_str(&indent.repeat(level));
            }
        };
        for (i, (key, value)) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.item);
            }
            newline(out, level + 1);
            if let Some(key) = key {
                self.write_string(out, key);
                out.push_str(&self.key);
            }
            self.write(out, value, level + 1);
        }
        newline(out, level);
        out.push(close);
    }

    fn write_string(&self, out: &mut String, s: &str) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// The chat format declared beside the tokenizer file at `tokenizer`: `chat_template.jinja`
/// (which transformers prefers) or `chat_template` in `tokenizer_config.json` (a string, or a
/// list of `{name, template}` of which transformers uses `default`), with `bos_token` and
/// `eos_token` from the config (strings or `{content: …}`). `None` when neither has a template.
pub fn read_chat_spec(tokenizer: &Path) -> Result<Option<ChatSpec>, TokenizerError> {
    let dir = tokenizer.parent().unwrap_or(Path::new("."));
    let config_path = dir.join(CONFIG_FILE);
    let template_path = dir.join(TEMPLATE_FILE);
    let read = |path: &Path| {
        std::fs::read_to_string(path).map_err(|cause| TokenizerError::Io {
            path: path.to_path_buf(),
            cause,
        })
    };
    let config = if config_path.is_file() {
        let text = read(&config_path)?;
        let value: Json =
            serde_json::from_str(&text).map_err(|e| format_error(&config_path, format!("not JSON: {e}")))?;
        match value {
            Json::Object(map) => Some(map),
            other => {
                return Err(format_error(
                    &config_path,
                    format!("expected a JSON object, got {other}"),
                ));
            }
        }
    } else {
        None
    };
    let template = if template_path.is_file() {
        Some(read(&template_path)?)
    } else {
        match config.as_ref().and_then(|c| c.get("chat_template")) {
            None | Some(Json::Null) => None,
            Some(value) => Some(template_of(value).map_err(|problem| format_error(&config_path, problem))?),
        }
    };
    let Some(template) = template else {
        return Ok(None);
    };
    let token = |key: &str| -> Result<Option<String>, TokenizerError> {
        match config.as_ref().and_then(|c| c.get(key)) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s.clone())),
            Some(Json::Object(o)) if o.get("content").is_some_and(Json::is_string) => {
                Ok(o["content"].as_str().map(str::to_string))
            }
            Some(other) => Err(format_error(
                &config_path,
                format!("`{key}` must be a string or an object with a string `content`, got {other}"),
            )),
        }
    };
    Ok(Some(ChatSpec {
        template,
        bos_token: token("bos_token")?,
        eos_token: token("eos_token")?,
    }))
}

fn format_error(path: &Path, problem: String) -> TokenizerError {
    TokenizerError::Format {
        path: PathBuf::from(path),
        problem,
    }
}

/// The template of a config's `chat_template` value.
fn template_of(value: &Json) -> Result<String, String> {
    let list = match value {
        Json::String(s) => return Ok(s.clone()),
        Json::Array(list) => list,
        other => {
            return Err(format!(
                "`chat_template` must be a string or a list of {{name, template}}, got {other}"
            ));
        }
    };
    let mut names = Vec::new();
    for (i, entry) in list.iter().enumerate() {
        let field = |key: &str| entry.get(key).and_then(Json::as_str);
        let (Some(name), Some(template)) = (field("name"), field("template")) else {
            return Err(format!(
                "`chat_template[{i}]` must be an object with string `name` and `template`, got {entry}"
            ));
        };
        if name == "default" {
            return Ok(template.to_string());
        }
        names.push(name);
    }
    Err(format!(
        "`chat_template` lists templates named {names:?} but none named `default`, the one transformers uses"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_writes_what_python_writes() {
        // 2024-07-26 13:25:09 UTC, a Friday (the day of Llama 3.1's default date), and 2000-02-29.
        let t = 1_722_000_309;
        assert_eq!(
            strftime("%d %b %Y|%B %j %A %a %H:%M:%S %I%p %y %m %%", t).unwrap(),
            "26 Jul 2024|July 208 Friday Fri 13:25:09 01PM 24 07 %"
        );
        assert_eq!(strftime("%Y-%m-%d %j", 951_782_400).unwrap(), "2000-02-29 060");
        assert!(
            strftime("%Q", t)
                .unwrap_err()
                .to_string()
                .contains("%Q is not supported")
        );
    }

    #[test]
    fn tojson_writes_what_pythons_json_dumps_writes() {
        // Expected strings: Python 3.11's json.dumps of the same value with the same arguments.
        let mut env = Environment::new();
        env.add_filter("tojson", tojson);
        let m = serde_json::json!([
            {"role": "user", "content": "a \"q\" <b> & 'c' é\n\t\u{1}"},
            {"role": "assistant", "content": "", "n": [1, 2.5, true, null, {}], "e": []}
        ]);
        let render = |source: &str| env.render_str(source, minijinja::context! { m => Value::from(Serde(&m)) });
        assert_eq!(
            render("{{ m | tojson }}").unwrap(),
            r#"[{"role": "user", "content": "a \"q\" <b> & 'c' é\n\t\u0001"}, {"role": "assistant", "content": "", "n": [1, 2.5, true, null, {}], "e": []}]"#
        );
        assert_eq!(
            render("{{ m[1] | tojson(indent=2) }}").unwrap(),
            "{\n  \"role\": \"assistant\",\n  \"content\": \"\",\n  \"n\": [\n    1,\n    2.5,\n    true,\n    null,\n    {}\n  ],\n  \"e\": []\n}"
        );
        assert_eq!(
            render("{{ m[0] | tojson(ensure_ascii=true, sort_keys=true, separators=(',', ':')) }}").unwrap(),
            r#"{"content":"a \"q\" <b> & 'c' \u00e9\n\t\u0001","role":"user"}"#
        );
        let error = render("{{ m | tojson(colour=1) }}").unwrap_err().to_string();
        assert!(error.contains("colour"), "{error}");
    }

    #[test]
    fn generation_tags_render_their_body() {
        assert_eq!(
            without_generation_tags("a{%- generation %}b{% endgeneration -%} {% if x %}{%generations%}"),
            "a{%- if true %}b{% endif -%} {% if x %}{%generations%}"
        );
    }
}
