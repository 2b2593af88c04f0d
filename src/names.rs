//! Enums that users pick by name, on the command line or in files: each gets its `FromStr` and
//! `Display` from one table of names (`named!`), so the library needs no command-line parser and
//! the command line offers exactly these names. Knows none of the enums.

/// An enum whose every value has one name.
pub trait Named: Sized + Copy + PartialEq + 'static {
    /// Every value with its name, in the order help texts list them.
    const NAMES: &'static [(&'static str, Self)];

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, value)| *value == self)
            .map(|(name, _)| *name)
            .expect("every value has a name")
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{given}` is not one of {}", expected.join(", "))]
pub struct UnknownName {
    pub given: String,
    pub expected: Vec<&'static str>,
}

/// Reads a name of `T`.
pub fn parse<T: Named>(text: &str) -> Result<T, UnknownName> {
    T::NAMES
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, value)| *value)
        .ok_or_else(|| UnknownName {
            given: text.to_string(),
            expected: T::NAMES.iter().map(|(name, _)| *name).collect(),
        })
}

/// `named!(Type { "name" => Type::Variant, … })`: the names table with `FromStr` and `Display`.
#[macro_export]
macro_rules! named {
    ($ty:ty { $($name:literal => $value:expr),+ $(,)? }) => {
        impl $crate::names::Named for $ty {
            const NAMES: &'static [(&'static str, Self)] = &[$(($name, $value)),+];
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::names::UnknownName;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                $crate::names::parse(text)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::names::Named::name(*self))
            }
        }
    };
}
