"""The `apls` command's errors name the flag or the file at fault, options that need
--speculative are refused without it, the prompt is echoed as llama.cpp does, and the bench
table's columns line up. In-process (apls.cli.main): no subprocess start per case."""

import pytest

from apls.bench import format_table
from apls.cli import main


def fails_with(capsys, argv, status, *needles):
    """Run the CLI; assert its exit status and that stderr holds every needle, with no traceback."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse's errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == status, err
    for n in needles:
        assert n in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["run", "-n", "-5", "hi"], "-n/--n-predict"),
        (["run", "-c", "-1", "hi"], "-c/--ctx-size"),
        (["run", "-t", "-2", "hi"], "-t/--threads"),
        (["run", "--top-k", "-1", "hi"], "--top-k"),
        (["bench", "-r", "0"], "-r/--reps"),
        (["bench", "-p", "-1"], "-p/--n-prompt"),
        (["tune", "--prompts", "q.jsonl", "--n-gen", "0"], "--n-gen"),
        (["quantize", "a.gguf", "b.gguf", "Q4_0", "-t", "-1"], "-t/--threads"),
    ],
)
def test_bad_numbers_name_the_flag(capsys, argv, flag):
    fails_with(capsys, argv, 2, f"argument {flag}", "must be >= ")


def test_probabilities_out_of_range_name_the_flag(capsys):
    fails_with(capsys, ["run", "--top-p", "1.5", "hi"], 2, "argument --top-p", "must be in [0, 1], got 1.5")
    fails_with(capsys, ["run", "--min-p", "-0.1", "hi"], 2, "argument --min-p", "must be in [0, 1]")
    fails_with(capsys, ["run", "-n", "lots", "hi"], 2, "argument -n/--n-predict", "invalid integer value: 'lots'")
    fails_with(
        capsys,
        ["serve", "--speculative", "--draft-threshold", "1"],
        2,
        "argument --draft-threshold",
        "must be in [0, 1)",
    )


@pytest.mark.parametrize(
    "argv, option",
    [
        (["run", "--plan", "plan.json", "hi"], "--plan"),
        (["run", "--policy", "static", "hi"], "--policy"),
        (["bench", "--prompts", "q.jsonl"], "--prompts"),
        (["bench", "--long"], "--long"),
        (["bench", "--plan", "plan.json"], "--plan"),
        (["serve", "--draft-threshold", "0.2"], "--draft-threshold"),
    ],
)
def test_speculative_options_need_speculative(capsys, argv, option):
    fails_with(capsys, argv, 2, f"{option} needs --speculative")


def test_a_bad_model_file_is_named(capsys, tmp_path):
    bad = tmp_path / "not-a-model.gguf"
    bad.write_text("this is not a model")
    fails_with(capsys, ["run", "-m", str(bad), "hi"], 1, f"{bad}: ", "magic")
    fails_with(capsys, ["info", str(tmp_path / "missing.gguf")], 1, "missing.gguf")


def test_the_prompt_is_echoed_unless_asked_not_to(capsys, smollm2_path):
    argv = ["run", "-m", smollm2_path, "-n", "6", "--temp", "0", "-t", "1", "The capital of France is"]
    assert main(argv) == 0
    echoed = capsys.readouterr().out
    assert main([*argv[:-1], "--no-display-prompt", argv[-1]]) == 0
    bare = capsys.readouterr().out
    assert echoed == "The capital of France is" + bare and bare.strip()
    # --chat prints the reply only (the template's text is not what the user typed).
    assert main([*argv[:-1], "--chat", "What is 2 + 2?"]) == 0
    assert "What is 2 + 2?" not in capsys.readouterr().out


def test_bench_table_columns_line_up():
    res = {
        "model": "m.gguf",
        "n_threads": 2,
        "reps": 5,
        "n_prompt": 512,
        "n_gen": 128,
        "prefill_tok_s": 1234.5,
        "prefill_tok_s_std": 12.3,
        "decode_tok_s": 288.4,
        "decode_tok_s_std": 1.25,
        "llama_cpp": {"prefill_tok_s": 999.0, "prefill_tok_s_std": 3.0, "decode_tok_s": 250.0, "decode_tok_s_std": 2.0},
        "prefill_ratio": 1.24,
        "decode_ratio": 1.15,
    }
    rows = format_table(res).splitlines()[1:]  # the table under the title line
    assert len(rows) == 5 and "pp512 tok/s" in rows[0] and "tg128 tok/s" in rows[0]
    bars = {tuple(i for i, c in enumerate(r) if c == "|") for r in rows}
    assert bars == {(0, 12, 31, 50)}, rows  # every row's separators in the same columns
