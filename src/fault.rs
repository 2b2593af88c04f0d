//! Faults injected on purpose, so that tests can exercise recovery with real processes (a
//! cluster task that fails, a task killed in the middle of an item). Set through the
//! environment variable `TESSERA_FAULT`, which no real run sets:
//! `fail:<item>` makes a library build fail when it reaches that work item (e.g.
//! `fail:layer_1/kv1`); `stall:<item>:<step>` makes it checkpoint that item after `step`
//! optimizer steps and then wait until it is killed. Knows item keys, nothing of items.

pub const VARIABLE: &str = "TESSERA_FAULT";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Fail { item: String },
    Stall { item: String, step: usize },
}

#[derive(Debug, thiserror::Error)]
#[error("{VARIABLE}=`{text}`: expected fail:<item> or stall:<item>:<step>")]
pub struct FaultError {
    pub text: String,
}

impl std::str::FromStr for Fault {
    type Err = FaultError;

    fn from_str(text: &str) -> Result<Self, FaultError> {
        let bad = || FaultError { text: text.to_string() };
        match text.split_once(':') {
            Some(("fail", item)) if !item.is_empty() => Ok(Fault::Fail { item: item.into() }),
            Some(("stall", rest)) => {
                let (item, step) = rest.rsplit_once(':').ok_or_else(bad)?;
                let step = step.parse().map_err(|_| bad())?;
                Ok(Fault::Stall {
                    item: item.into(),
                    step,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// The fault this process was asked to inject, if any.
pub fn injected() -> Result<Option<Fault>, FaultError> {
    match std::env::var(VARIABLE) {
        Ok(text) if !text.is_empty() => text.parse().map(Some),
        _ => Ok(None),
    }
}

/// Waits until the process is killed (the stall of a `stall:` fault).
pub fn stall_forever() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_back_and_bad_ones_are_refused() {
        assert_eq!(
            "fail:layer_1/kv1".parse::<Fault>().unwrap(),
            Fault::Fail {
                item: "layer_1/kv1".into()
            }
        );
        assert_eq!(
            "stall:layer_0/ffn 64:3".parse::<Fault>().unwrap(),
            Fault::Stall {
                item: "layer_0/ffn 64".into(),
                step: 3
            }
        );
        for bad in ["fail:", "stall:layer_0/kv1", "stall:layer_0/kv1:x", "boom"] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
