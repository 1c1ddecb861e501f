//! The generator's histories: linearizable ones must check valid, each
//! corruption must check invalid, and on small ones the checker must agree
//! with a brute-force search over every order.

mod support;

use lockstep_jepsen::{
    check, corrupt, linearizable_history, render_html, CheckConfig, Corruption, GeneratorConfig, KeyOutcome, Verdict,
};
use proptest::prelude::*;

use support::brute_force_valid;

fn config(ops: u64, clients: u32, info_fraction: f64, seed: u64) -> GeneratorConfig {
    GeneratorConfig { ops, clients, info_fraction, seed, ..GeneratorConfig::default() }
}

/// The default budget, and one that tries the necessary conditions and the
/// window search after a single step, so that their soundness is tested on
/// every history (small ones are otherwise decided by the search alone).
fn configs() -> [CheckConfig; 2] {
    [CheckConfig::default(), CheckConfig { slice_steps: 1, ..CheckConfig::default() }]
}

fn corruption() -> impl Strategy<Value = Corruption> {
    prop::sample::select(Corruption::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn generated_histories_are_valid(
        ops in 0_u64..400,
        clients in 1_u32..12,
        info_fraction in prop_oneof![Just(0.0), Just(0.005), 0.0_f64..0.2],
        seed in any::<u64>(),
    ) {
        let history = linearizable_history(&config(ops, clients, info_fraction, seed));
        for check_config in configs() {
            let result = check(&history, &check_config);
            prop_assert_eq!(result.verdict, Verdict::Valid, "{}\n{}", result, history.to_jsonl());
        }
    }

    #[test]
    fn corrupted_histories_are_invalid_with_a_window(
        ops in 20_u64..400,
        clients in 1_u32..12,
        info_fraction in prop_oneof![Just(0.0), Just(0.005), 0.0_f64..0.2],
        seed in any::<u64>(),
        corruption in corruption(),
        at in 0.0_f64..1.0,
    ) {
        let history = linearizable_history(&config(ops, clients, info_fraction, seed));
        let Some(corrupted) = corrupt(&history, corruption, at) else { return Ok(()) };
        for check_config in configs() {
            let result = check(&corrupted, &check_config);
            prop_assert_eq!(result.verdict, Verdict::Invalid, "{:?}: {}\n{}", corruption, result, corrupted.to_jsonl());
            let html = render_html(&corrupted, &result);
            prop_assert!(html.contains("not linearizable"));
            prop_assert!(html.contains("op bad"), "the failing ops are highlighted");
        }
    }

    #[test]
    fn agrees_with_brute_force_on_small_generated_histories(
        ops in 1_u64..9,
        clients in 1_u32..5,
        info_fraction in prop_oneof![Just(0.0), 0.0_f64..0.5],
        seed in any::<u64>(),
        corruption in prop::option::of(corruption()),
        at in 0.0_f64..1.0,
    ) {
        let history = linearizable_history(&config(ops, clients, info_fraction, seed));
        let history = match corruption {
            Some(corruption) => corrupt(&history, corruption, at).unwrap_or(history),
            None => history,
        };
        let expected = brute_force_valid(&history);
        for check_config in configs() {
            let result = check(&history, &check_config);
            prop_assert_eq!(result.valid, expected, "{}\n{}", result, history.to_jsonl());
        }
    }
}

#[test]
fn every_corruption_finds_a_place_in_a_long_history() {
    let history = linearizable_history(&config(2_000, 10, 0.005, 9));
    for corruption in Corruption::ALL {
        for at in [0.1, 0.5, 0.9] {
            let corrupted = corrupt(&history, corruption, at).expect("room for every corruption");
            let result = check(&corrupted, &CheckConfig::default());
            assert_eq!(result.verdict, Verdict::Invalid, "{corruption:?} at {at}: {result}");
            let KeyOutcome::Invalid(counterexample) = &result.keys[0].outcome else { panic!("invalid key") };
            assert!(!counterexample.window.is_empty(), "{corruption:?} at {at}: a failing window is found");
            assert!(counterexample.window.len() <= 64, "{corruption:?} at {at}: {counterexample}");
        }
    }
}

#[test]
fn generator_is_deterministic_and_writes_unique_values() {
    let first = linearizable_history(&config(1_000, 7, 0.01, 5));
    let second = linearizable_history(&config(1_000, 7, 0.01, 5));
    assert_eq!(first, second);
    assert_eq!(first.len(), 2_000);
    let mut written = std::collections::HashSet::new();
    for op in first.ops().iter().filter(|op| op.op_type == lockstep_jepsen::OpType::Invoke) {
        let value = match op.value {
            lockstep_jepsen::Value::Int(value) | lockstep_jepsen::Value::Cas { new: value, .. } => value,
            lockstep_jepsen::Value::Nil => continue,
        };
        assert!(written.insert(value), "value {value} written twice");
    }
}
