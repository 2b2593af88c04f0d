//! The language-modelling corpus: short stories from a small grammar with consistent
//! characters (a name keeps its pronoun, the found object comes back later), so a model has
//! both local syntax and some longer-range structure to learn.

use rand::Rng;
use rand::seq::IndexedRandom;

const NAMES: [(&str, bool); 16] = [
    ("Lily", false),
    ("Tom", true),
    ("Mia", false),
    ("Ben", true),
    ("Sara", false),
    ("Max", true),
    ("Anna", false),
    ("Leo", true),
    ("Zoe", false),
    ("Sam", true),
    ("Emma", false),
    ("Jack", true),
    ("Lucy", false),
    ("Tim", true),
    ("Ella", false),
    ("Finn", true),
];
const ANIMALS: [&str; 10] = [
    "cat", "dog", "bird", "frog", "bunny", "fox", "duck", "bear", "mouse", "owl",
];
const ADJECTIVES: [&str; 10] = [
    "little", "happy", "brave", "shy", "curious", "kind", "sleepy", "funny", "clever", "tiny",
];
const COLORS: [&str; 8] = ["red", "blue", "green", "yellow", "purple", "orange", "pink", "shiny"];
const OBJECTS: [&str; 10] = [
    "ball", "kite", "box", "hat", "book", "key", "shell", "stone", "cup", "drum",
];
const PLACES: [&str; 8] = ["park", "garden", "forest", "beach", "farm", "town", "hill", "lake"];
const SPOTS: [&str; 8] = [
    "big tree",
    "old bridge",
    "river",
    "fence",
    "flower bed",
    "rock",
    "pond",
    "gate",
];
const FEELINGS: [&str; 6] = ["happy", "excited", "surprised", "proud", "glad", "curious"];
const FRIENDS: [&str; 6] = ["mom", "dad", "friend", "sister", "brother", "grandma"];
const ACTIONS: [&str; 6] = [
    "played with",
    "looked at",
    "cleaned",
    "showed everyone",
    "carried",
    "shared",
];

fn pick<'a>(rng: &mut impl Rng, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).expect("non-empty word list")
}

/// One story of five to eight sentences.
pub fn story(rng: &mut impl Rng) -> String {
    let &(name, male) = NAMES.choose(rng).expect("names");
    let (he, his) = if male { ("He", "his") } else { ("She", "her") };
    let animal = pick(rng, &ANIMALS);
    let adjective = pick(rng, &ADJECTIVES);
    let place = pick(rng, &PLACES);
    let friend = pick(rng, &FRIENDS);
    let color = pick(rng, &COLORS);
    let object = pick(rng, &OBJECTS);
    let spot = pick(rng, &SPOTS);
    let feeling = pick(rng, &FEELINGS);
    let mut sentences = vec![
        match rng.random_range(0..3) {
            0 => format!("Once upon a time, there was a {adjective} {animal} named {name}."),
            1 => format!("{name} was a {adjective} {animal} who lived near the {place}."),
            _ => format!(
                "There once was a {animal} called {name}, and {} was very {adjective}.",
                he.to_lowercase()
            ),
        },
        format!("{he} liked to go to the {place} with {his} {friend}."),
        format!("One day, {name} found a {color} {object} near the {spot}."),
        format!("{he} was very {feeling}."),
    ];
    if rng.random_bool(0.5) {
        sentences.push(format!("\"Look, {friend}! I found a {color} {object}!\" said {name}."));
    }
    let action = pick(rng, &ACTIONS);
    sentences.push(format!("{name} {action} the {object} all day."));
    if rng.random_bool(0.5) {
        let other = pick(rng, &ANIMALS);
        sentences.push(format!(
            "Then a {other} came to the {spot} and wanted the {object} too."
        ));
        sentences.push(format!("{name} and the {other} took turns, and they became friends."));
    }
    sentences.push(match rng.random_range(0..3) {
        0 => format!("At night, {name} put the {object} next to {his} bed and fell asleep."),
        1 => format!("In the end, {name} and {his} {friend} went home, {feeling} and tired."),
        _ => format!("From that day on, {name} always went back to the {spot} in the {place}."),
    });
    sentences.join(" ")
}
