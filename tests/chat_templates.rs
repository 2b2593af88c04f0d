//! Chat templates for real tokenizers (issue 21, item 5): the ChatML fixture tokenizer renders
//! chats as transformers does, its assistant mask is the one transformers computes, a generation
//! prompt ends where the assistant's text begins, the think tags work as plain text of several
//! tokens, templates tessera cannot render are refused naming the problem, the template is read
//! from `tokenizer_config.json` / `chat_template.jinja`, and a tiny SFT run with the fixture
//! tokenizer trains only assistant tokens and learns to stop at `<|im_end|>`.

use std::path::{Path, PathBuf};

use burn::prelude::Device;
use tessera::checkpoint::Checkpoint;
use tessera::eval::{answer_correct, task_accuracy};
use tessera::model::{ModelConfig, random_weights};
use tessera::posttrain::{GrpoSettings, RlOptions, SftOptions, SftStage, StageChats, rl, sft};
use tessera::tokenizer::{ChatSpec, ChatTemplate, Message, Tokenizer};
use tessera::train::RunControl;
use tessera::world::{Chat, ChatFormat, Task, Thinking, final_answer, format_matches};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tokenizers")
        .join(name)
}

/// The byte-level BPE fixture with SmolLM2's pre-tokenizer and a ChatML `chat_template` in its
/// tokenizer_config.json (`<|endoftext|>` = 0, `<|im_start|>` = 1, `<|im_end|>` = 2).
fn chatml() -> Tokenizer {
    Tokenizer::read(&fixture("bpe_smollm").join("tokenizer.json")).unwrap()
}

fn messages<'a>(pairs: &[(&'a str, &'a str)]) -> Vec<Message<'a>> {
    pairs
        .iter()
        .map(|&(role, content)| Message::new(role, content))
        .collect()
}

const THINKING_ON: [(&str, &str); 3] = [
    ("system", "detailed thinking on"),
    ("user", "What is 3+4?"),
    ("assistant", "<think>\n3+4 = 7\n</think>\nThe answer is 7."),
];
const TWO_TURNS_OFF: [(&str, &str); 5] = [
    ("system", "detailed thinking off"),
    ("user", "hi é"),
    ("assistant", "yo"),
    ("user", "1+1?"),
    ("assistant", "2"),
];

// Expected texts, ids and assistant masks: transformers 5.24.0 on this fixture
// (`AutoTokenizer.from_pretrained("tests/fixtures/tokenizers/bpe_smollm")`),
// `apply_chat_template(messages, tokenize=False / True, add_generation_prompt=…)`. The masks are
// transformers' `return_assistant_tokens_mask=True` with the same template whose assistant
// content and `<|im_end|>` sit inside `{% generation %}…{% endgeneration %}` (it renders the same
// text; transformers computes masks only for templates with such blocks).
const ON_TEXT: &str = "<|im_start|>system\ndetailed thinking on<|im_end|>\n<|im_start|>user\nWhat is 3+4?<|im_end|>\n<|im_start|>assistant\n<think>\n3+4 = 7\n</think>\nThe answer is 7.<|im_end|>\n";
const ON_IDS: [u32; 87] = [
    1, 85, 91, 85, 86, 71, 79, 201, 70, 71, 86, 67, 75, 78, 71, 70, 293, 265, 77, 265, 73, 223, 277, 2, 201, 1, 87, 85,
    274, 201, 57, 292, 223, 273, 223, 21, 13, 22, 33, 2, 201, 1, 67, 85, 85, 273, 86, 299, 86, 201, 30, 86, 74, 265,
    77, 32, 201, 21, 13, 22, 223, 31, 223, 25, 201, 30, 17, 86, 74, 265, 77, 32, 201, 54, 260, 262, 80, 85, 89, 274,
    223, 273, 223, 25, 16, 2, 201,
];
const ON_MASKED: std::ops::RangeInclusive<usize> = 50..=85;
const TWO_TURNS_TEXT: &str = "<|im_start|>system\ndetailed thinking off<|im_end|>\n<|im_start|>user\nhi é<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>user\n1+1?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n";
const TWO_TURNS_IDS: [u32; 74] = [
    1, 85, 91, 85, 86, 71, 79, 201, 70, 71, 86, 67, 75, 78, 71, 70, 293, 265, 77, 265, 73, 291, 72, 72, 2, 201, 1, 87,
    85, 274, 201, 74, 75, 223, 130, 105, 2, 201, 1, 67, 85, 85, 273, 86, 299, 86, 201, 91, 81, 2, 201, 1, 87, 85, 274,
    201, 19, 13, 19, 33, 2, 201, 1, 67, 85, 85, 273, 86, 299, 86, 201, 20, 2, 201,
];
const TWO_TURNS_MASKED: [usize; 5] = [47, 48, 49, 71, 72];
const PROMPT_TEXT: &str = "<|im_start|>system\ndetailed thinking on<|im_end|>\n<|im_start|>user\nWhat is 3+4?<|im_end|>\n<|im_start|>assistant\n";

fn trained_positions(trained: &[bool]) -> Vec<usize> {
    trained
        .iter()
        .enumerate()
        .filter(|(_, t)| **t)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn the_chatml_fixture_renders_and_masks_like_transformers() {
    let tokenizer = chatml();
    let spec = tokenizer
        .chat_spec()
        .expect("the fixture's tokenizer_config.json has a chat_template");
    assert_eq!(spec.bos_token.as_deref(), Some("<|endoftext|>"));
    assert_eq!(spec.eos_token.as_deref(), Some("<|endoftext|>"));
    let template = ChatTemplate::new(spec, &tokenizer).unwrap();
    assert_eq!(template.end_of_turn(), 2, "<|im_end|> ends a ChatML turn");

    let on = messages(&THINKING_ON);
    assert_eq!(template.render(&on, false).unwrap(), ON_TEXT);
    assert_eq!(template.render(&on[..2], true).unwrap(), PROMPT_TEXT);
    let two = messages(&TWO_TURNS_OFF);
    assert_eq!(template.render(&two, false).unwrap(), TWO_TURNS_TEXT);

    let chat = template.encode_chat(&tokenizer, &on).unwrap();
    assert_eq!(chat.tokens, ON_IDS);
    assert_eq!(trained_positions(&chat.trained), ON_MASKED.collect::<Vec<_>>());
    let chat = template.encode_chat(&tokenizer, &two).unwrap();
    assert_eq!(chat.tokens, TWO_TURNS_IDS);
    assert_eq!(trained_positions(&chat.trained), TWO_TURNS_MASKED);
    // The trained tokens are each reply and the `<|im_end|>` after it, not the newline after.
    assert_eq!([chat.tokens[49], chat.tokens[72]], [2, 2]);
    assert_eq!([chat.tokens[50], chat.tokens[73]], [201, 201]);
}

#[test]
fn a_generation_prompt_ends_where_the_assistant_text_begins_and_think_tags_are_plain_text() {
    let tokenizer = chatml();
    let format = ChatFormat::of(&tokenizer).unwrap();
    assert!(
        format.template().is_some(),
        "the fixture's template is used, not the built-in markers"
    );
    assert!(tokenizer.encode("<think>", false).unwrap().len() > 1);
    assert!(tokenizer.encode("</think>", false).unwrap().len() > 1);
    let task = Task {
        question: "What is 3+4?".into(),
        thinking: "3+4 = 7".into(),
        answer: "7".into(),
    };
    for thinking in [Thinking::On, Thinking::Off] {
        let prompt = format.prompt(&task, thinking).unwrap();
        let chat = format.chat(&task.chat(thinking)).unwrap();
        assert_eq!(
            tokenizer.decode(&prompt).unwrap(),
            format!("system\n{}\nuser\nWhat is 3+4?\nassistant\n", thinking.system_prompt()),
            "special tokens decode to nothing"
        );
        assert_eq!(chat.tokens[..prompt.len()], prompt[..]);
        let trained = trained_positions(&chat.trained);
        assert_eq!(
            trained[0],
            prompt.len(),
            "{thinking:?}: the first trained token starts the reply"
        );
        assert_eq!(
            chat.tokens[*trained.last().unwrap()],
            2,
            "the reply ends with <|im_end|>"
        );
        assert_eq!(trained.len(), trained.last().unwrap() - prompt.len() + 1, "one span");
        // What a model that learnt this chat would say, read back by the verifier.
        let reply = tokenizer.decode(&chat.tokens[prompt.len()..]).unwrap();
        assert_eq!(reply.trim_end(), task.chat(thinking).turns[0].1);
        assert_eq!(final_answer(&reply), "7");
        assert!(answer_correct(&reply, &task.answer));
        assert!(format_matches(&reply, thinking));
        assert!(!format_matches(
            &reply,
            if thinking == Thinking::On {
                Thinking::Off
            } else {
                Thinking::On
            }
        ));
    }
    assert_eq!(format.stop_tokens(0), [0, 2], "EOS and <|im_end|>");
    assert_eq!(format.stop_tokens(2), [2]);
}

fn refusal(template: &str) -> String {
    let tokenizer = chatml().with_chat_spec(ChatSpec {
        template: template.into(),
        bos_token: None,
        eos_token: None,
    });
    match ChatFormat::of(&tokenizer) {
        Ok(_) => panic!("{template:?} was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn templates_tessera_cannot_render_are_refused_naming_the_problem() {
    const CHATML_TURN: &str = "{{ '<|im_start|>' + m.role + '\\n' + m.content + '<|im_end|>\\n' }}";
    let cases = [
        (
            "{% for m in messages %}{{ m.content | frobnicate }}{% endfor %}".to_string(),
            "unknown filter",
        ),
        (
            format!("{{% for m in messages %}}{{% if m.role == 'system' %}}{{{{ raise_exception('System role not supported') }}}}{{% endif %}}{CHATML_TURN}{{% endfor %}}"),
            "System role not supported",
        ),
        (format!("{{% for m in messages %}}{CHATML_TURN}"), "does not parse"),
        (
            "{% for m in messages %}### {{ m.role }}: {{ m.content }}\n\n{% endfor %}{% if add_generation_prompt %}### assistant: {% endif %}".to_string(),
            "with no special token of the tokenizer in it",
        ),
        (
            "{% for m in messages %}{{ '<|im_start|>' + m.role + '\\n' + m.content | upper + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".to_string(),
            "does not write the assistant's text",
        ),
        (
            format!("{{% for m in messages %}}{{{{ strftime_now('%Q') }}}}{CHATML_TURN}{{% endfor %}}"),
            "%Q is not supported",
        ),
    ];
    for (template, expected) in &cases {
        let error = refusal(template);
        assert!(
            error.contains("chat template"),
            "`{error}` does not say it is the chat template"
        );
        assert!(error.contains(expected), "`{error}` does not say `{expected}`");
    }

    // A template that drops the <think> part of earlier assistant turns (as Qwen3's does): one
    // turn renders, two cannot be split into prompt and reply.
    let rewriting = format!(
        "{{% for m in messages %}}{{% if m.role == 'assistant' and not loop.last %}}{{{{ '<|im_start|>assistant\\n' + m.content.split('</think>')[-1] + '<|im_end|>\\n' }}}}{{% else %}}{CHATML_TURN}{{% endif %}}{{% endfor %}}{{% if add_generation_prompt %}}<|im_start|>assistant\n{{% endif %}}"
    );
    let tokenizer = chatml().with_chat_spec(ChatSpec {
        template: rewriting,
        bos_token: None,
        eos_token: None,
    });
    let format = ChatFormat::of(&tokenizer).unwrap();
    let mut chat = Chat {
        thinking: Thinking::On,
        turns: vec![("hi".into(), "<think>greet</think>yo".into())],
    };
    format.chat(&chat).unwrap();
    chat.turns.push(("1+1?".into(), "<think>sum</think>2".into()));
    let error = format.chat(&chat).unwrap_err().to_string();
    for expected in [
        "do not extend each other",
        "the first 3 messages",
        "whole chat of 5 messages",
        "<think>greet",
    ] {
        assert!(error.contains(expected), "`{error}` does not say `{expected}`");
    }

    // Without a template the built-in markers are needed, one token each.
    let spm = Tokenizer::read(&fixture("spm").join("tokenizer.json")).unwrap();
    assert!(spm.chat_spec().is_none());
    let error = ChatFormat::of(&spm).err().expect("refused").to_string();
    assert!(
        error.contains("no chat template") && error.contains("`<|system|>`"),
        "{error}"
    );
}

/// A copy of the ChatML fixture's tokenizer.json in a fresh directory, with `files` beside it.
fn tokenizer_dir(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let json = dir.join("tokenizer.json");
    std::fs::copy(fixture("bpe_smollm").join("tokenizer.json"), &json).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    json
}

#[test]
fn the_template_is_read_from_the_tokenizer_config_or_chat_template_jinja() {
    let tmp = tempfile::tempdir().unwrap();
    let read = |name: &str, files: &[(&str, &str)]| Tokenizer::read(&tokenizer_dir(&tmp.path().join(name), files));

    let none = read("none", &[]).unwrap();
    assert!(none.chat_spec().is_none());

    let listed = r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}],
                     "bos_token": {"content": "<|endoftext|>", "special": true}, "eos_token": "<|im_end|>"}"#;
    let spec = read("listed", &[("tokenizer_config.json", listed)])
        .unwrap()
        .chat_spec()
        .cloned();
    assert_eq!(
        spec,
        Some(ChatSpec {
            template: "D".into(),
            bos_token: Some("<|endoftext|>".into()),
            eos_token: Some("<|im_end|>".into()),
        })
    );
    let spec = read(
        "jinja",
        &[("tokenizer_config.json", listed), ("chat_template.jinja", "J")],
    )
    .unwrap()
    .chat_spec()
    .cloned()
    .unwrap();
    assert_eq!(spec.template, "J", "chat_template.jinja wins, as in transformers");
    assert_eq!(spec.eos_token.as_deref(), Some("<|im_end|>"));

    for (config, expected) in [
        (
            r#"{"chat_template": 5}"#,
            "`chat_template` must be a string or a list of {name, template}",
        ),
        (
            r#"{"chat_template": [{"name": "tool_use", "template": "T"}]}"#,
            "templates named [\"tool_use\"] but none named `default`",
        ),
        (
            r#"{"chat_template": [{"name": "default"}]}"#,
            "`chat_template[0]` must be an object",
        ),
        (
            r#"{"chat_template": "T", "eos_token": 5}"#,
            "`eos_token` must be a string",
        ),
        ("{", "not JSON"),
    ] {
        let error = read("bad", &[("tokenizer_config.json", config)])
            .err()
            .expect("refused")
            .to_string();
        assert!(
            error.contains("tokenizer_config.json"),
            "`{error}` does not name the file"
        );
        assert!(error.contains(expected), "`{error}` does not say `{expected}`");
    }
}

fn tiny_model(vocab: usize) -> Checkpoint {
    let config = ModelConfig::uniform(vocab, 32, 2, 4, 2, 64, 128);
    Checkpoint {
        weights: random_weights(&config, 3),
        config,
        parent_layers: None,
    }
}

#[test]
fn tiny_sft_with_the_chatml_tokenizer_trains_only_assistant_tokens_and_learns_to_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let tokenizer = chatml();
    let device = Device::flex();
    let model = tiny_model(tokenizer.vocab_size());
    let task = Task {
        question: "What is 3+4?".into(),
        thinking: "3+4 = 7".into(),
        answer: "7".into(),
    };
    let chats = [task.chat(Thinking::On)];
    let trained = ChatFormat::of(&tokenizer).unwrap().chat(&chats[0]).unwrap().trained;
    let assistant_tokens = trained.iter().filter(|t| **t).count() as u64;

    let steps = 60;
    let options = SftOptions {
        stages: vec![SftStage {
            chats: StageChats::Both,
            steps,
        }],
        batch_size: 2,
        micro_batches: 1,
        peak_lr: 1e-2,
        seed: 1,
        control: RunControl {
            checkpoint_every: 1000,
            stop_after: None,
            progress: false,
        },
    };
    let (tuned, report) = sft(&model, &chats, &tokenizer, &options, &tmp.path().join("sft"), &device).unwrap();
    let stage = &report.stages[0];
    assert_eq!(
        stage.tokens_seen,
        steps as u64 * 2 * assistant_tokens,
        "every step counts the {assistant_tokens} assistant tokens of each chat and nothing else"
    );
    println!("SFT loss {:.4} -> {:.4}", stage.first_loss, stage.final_loss);
    assert!(stage.final_loss < 0.1 * stage.first_loss, "{stage:?}");

    // The tuned model answers in the format and stops at <|im_end|>: a reply that ran on would
    // carry text after the answer.
    let accuracy = task_accuracy(
        &tuned.build(&device).unwrap(),
        &tokenizer,
        std::slice::from_ref(&task),
        Thinking::On,
        40,
        1,
    )
    .unwrap();
    println!("reply after SFT: {:?}", accuracy.answers[0].reply);
    assert_eq!(accuracy.answers[0].reply, "<think>3+4 = 7</think>7");
    assert_eq!((accuracy.correct, accuracy.format_ok), (1, 1.0));

    // GRPO runs on the same format (prompts from the template, replies ending at <|im_end|>).
    let options = RlOptions {
        rounds: 1,
        updates_per_round: 1,
        prompts_per_round: 2,
        group_size: 2,
        micro_batches: 1,
        max_new_tokens: 16,
        temperature: 1.0,
        grpo: GrpoSettings::default(),
        peak_lr: 1e-4,
        solved_pass_rate: 1.1,
        seed: 2,
        control: RunControl {
            checkpoint_every: 1,
            stop_after: None,
            progress: false,
        },
    };
    let tasks = [(task.clone(), Thinking::On), (task, Thinking::Off)];
    let (_, report) = rl(&tuned, &tasks, &tokenizer, &options, &tmp.path().join("rl"), &device).unwrap();
    assert_eq!(report.steps, 1);
    let step = &report.history[0];
    assert!(step.kl.is_finite() && (0.0..=2.0).contains(&step.reward), "{step:?}");
}

/// SmolLM2-135M-Instruct's own template (from its GGUF) against jinja2's renders in the file
/// `TESSERA_SMOLLM2_CHAT` names (`chat.json` of `scripts/smollm2_reference.py`: 20 GSM8K chats
/// rendered the way transformers does): the texts, the generation prompts and the assistant
/// spans. Skipped when the variable is unset.
#[test]
fn smollm2_template_renders_like_jinja2() {
    let Some(path) = std::env::var_os("TESSERA_SMOLLM2_CHAT") else {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED smollm2_template_renders_like_jinja2: TESSERA_SMOLLM2_CHAT (the reference chat.json) is not set\n",
        );
        return;
    };
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let spec = ChatSpec {
        template: reference["chat_template"].as_str().unwrap().to_string(),
        bos_token: None,
        eos_token: None,
    };
    // The fixture tokenizer has SmolLM2's <|im_start|> / <|im_end|>: enough to find the turn end.
    let tokenizer = chatml();
    let template = ChatTemplate::new(&spec, &tokenizer).unwrap();
    let conversations = reference["conversations"].as_array().unwrap();
    for (i, conversation) in conversations.iter().enumerate() {
        let pairs: Vec<(&str, &str)> = conversation["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect();
        let messages = messages(&pairs);
        let rendered = conversation["rendered"].as_str().unwrap();
        let prompt = conversation["prompt_rendered"].as_str().unwrap();
        assert_eq!(template.render(&messages, false).unwrap(), rendered, "conversation {i}");
        assert_eq!(
            template.render(&messages[..2], true).unwrap(),
            prompt,
            "conversation {i}"
        );
        let (text, spans) = template.assistant_spans(&messages).unwrap();
        assert_eq!(text, rendered);
        assert_eq!(spans, vec![prompt.len()..rendered.len()], "conversation {i}");
    }
    println!(
        "{} SmolLM2 conversations render as jinja2 renders them",
        conversations.len()
    );
}
