"""`check` finds each class of mistake, with a precise message, and nothing in a clean repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ds_triton.cli import main
from ds_triton.repository.checks import Problem, check_repository, spec_problems
from ds_triton.repository.layout import SHIM_SOURCE, ModelFolder
from ds_triton.repository.machine import Machine
from ds_triton.repository.render import config_text, render_config
from ds_triton.repository.writer import render_folder, resolve_gpus_for_serving, write_rendered
from ds_triton.spec import ModelSpec
from tests.repository.conftest import MACHINE, MINILM, edit


def problems(repo: Path, machine: Machine = MACHINE) -> list[Problem]:
    return check_repository(repo, machine)


def only(repo: Path, kind: str, machine: Machine = MACHINE) -> Problem:
    found = problems(repo, machine)
    assert [p.kind for p in found] == [kind], [str(p) for p in found]
    return found[0]


def set_spec(repo: Path, model: str, **changes: object) -> None:
    path = repo / model / "1" / "model.json"
    data = json.loads(path.read_text())
    for dotted, value in changes.items():
        *sections, key = dotted.split("__")
        target = data
        for section in sections:
            target = target.setdefault(section, {})
        target[key] = value
    path.write_text(json.dumps(data))


def rerender(repo: Path, model: str) -> None:
    write_rendered(render_folder(ModelFolder(repo / model)))


def test_clean_repository_has_no_problems(repo: Path) -> None:
    assert problems(repo) == []


def test_schema_error_names_the_field_and_position(repo: Path) -> None:
    config = repo / "emb" / "config.pbtxt"
    edit(config, "max_batch_size: 64", "max_batch_size: 64\nmax_batch: 8")
    line = config.read_text().splitlines().index("max_batch: 8") + 1
    problem = only(repo, "schema")
    assert problem.where == f"config.pbtxt:{line}:1"
    assert 'no field named "max_batch"' in problem.message


def test_schema_error_on_a_wrong_value_type(repo: Path) -> None:
    edit(repo / "emb" / "config.pbtxt", "data_type: TYPE_STRING", "data_type: STRING")
    assert "STRING" in only(repo, "schema").message


def test_missing_checkpoint(repo: Path) -> None:
    set_spec(repo, "emb", checkpoint="/nonexistent/minilm")
    assert "/nonexistent/minilm does not exist" in only(repo, "checkpoint").message


def test_architecture_that_cannot_serve_the_task(repo: Path, checkpoints: dict[str, Path]) -> None:
    shutil.copytree(checkpoints["t5"], repo / "gen" / "1" / "t5")
    set_spec(repo, "gen", checkpoint="t5")
    message = only(repo, "checkpoint").message
    assert "'t5'" in message and "not a causal language model" in message


def test_interface_wrong_embedding_size(repo: Path) -> None:
    edit(repo / "emb" / "config.pbtxt", "dims: [384]", "dims: [768]")
    message = only(repo, "interface").message
    assert message == "output 'embedding' is TYPE_FP32 [768]; task 'embedding' needs TYPE_FP32 [384]"


def test_interface_wrong_type_missing_and_extra_tensors(repo: Path) -> None:
    config = repo / "gen" / "config.pbtxt"
    text_input = 'name: "text_input"\n  data_type: '
    edit(config, text_input + "TYPE_STRING", text_input + "TYPE_INT32")
    edit(config, 'name: "text_output"', 'name: "text"')
    found = [str(p) for p in problems(repo)]
    assert found == [
        "gen/config.pbtxt: [interface] input 'text_input' is TYPE_INT32 [1]; task 'generation' "
        "needs TYPE_STRING [1]",
        "gen/config.pbtxt: [interface] output 'text_output' is missing; task 'generation' needs "
        "TYPE_STRING [-1]",
        "gen/config.pbtxt: [interface] output 'text' is not part of task 'generation''s interface "
        "(cumulative_logprob, finish_reason, logprobs, num_input_tokens, num_output_tokens, "
        "prompt_logprobs, text_output); the model would never "
        "read or write it",
    ]


def test_decoupled_model_with_dynamic_batching_and_batch_size(repo: Path) -> None:
    config = repo / "gen" / "config.pbtxt"
    edit(config, 'backend: "python"', 'max_batch_size: 8\ndynamic_batching {\n}\nbackend: "python"')
    found = problems(repo)
    assert {p.kind for p in found} == {"decoupled"}
    messages = " | ".join(p.message for p in found)
    assert "dynamic_batching does not apply to a decoupled model" in messages
    assert "max_batch_size is 8" in messages


def test_generation_without_decoupled_policy(repo: Path) -> None:
    edit(repo / "gen" / "config.pbtxt", "decoupled: true", "decoupled: false")
    assert "needs model_transaction_policy { decoupled: true }" in only(repo, "decoupled").message


def test_generation_spec_with_batching_options(repo: Path) -> None:
    set_spec(repo, "gen", batching__max_queue_delay_us=100)
    problem = only(repo, "decoupled")
    assert problem.where == "1/model.json"
    assert "'batching' does not apply to a generation model" in problem.message


def test_gpu_ids_that_do_not_exist_here(repo: Path) -> None:
    set_spec(repo, "emb", deployment__device="gpu", deployment__gpus="all")
    spec = ModelSpec.load(repo / "emb")
    (repo / "emb" / "config.pbtxt").write_text(
        config_text(render_config(spec, embedding_dimension=384, gpu_ids=range(8)))
    )
    two_gpus = Machine(cores=4, gpu_ids=(0, 1))
    found = [p for p in problems(repo, two_gpus)]
    assert [p.kind for p in found] == ["gpu"] * 6
    assert str(found[0]) == (
        "emb/config.pbtxt: [gpu] instance_group[2] names GPU 2, which does not exist here (GPUs: 0, 1)"
    )
    assert problems(repo, Machine(cores=4, gpu_ids=tuple(range(8)))) == []
    no_gpu = problems(repo, MACHINE)
    assert len(no_gpu) == 8 and "this machine has no GPU" in no_gpu[0].message
    assert all(p.machine_specific for p in no_gpu)


def test_explicit_gpu_list_renders_and_checks(repo: Path) -> None:
    set_spec(repo, "gen", deployment__device="gpu", deployment__gpus=[0, 3])
    assert [p.kind for p in problems(repo, Machine(cores=4, gpu_ids=(0, 1, 2, 3)))] == ["stale"]


def test_instances_times_threads_over_cores(repo: Path) -> None:
    set_spec(repo, "emb", deployment__instances_per_device=3, deployment__threads_per_instance=2)
    rerender(repo, "emb")
    message = only(repo, "cores").message
    assert message.startswith(
        "3 CPU instance(s) x 2 thread(s) (deployment.threads_per_instance) = 6 threads > 4 cores"
    )


def test_more_instances_than_cores(repo: Path) -> None:
    set_spec(repo, "emb", deployment__instances_per_device=5)
    rerender(repo, "emb")
    assert "5 threads > 4 cores" in only(repo, "cores").message
    assert problems(repo, Machine(cores=8)) == []


def test_config_name_differs_from_folder(repo: Path) -> None:
    edit(repo / "emb" / "config.pbtxt", 'name: "emb"', 'name: "embedder"')
    problem = only(repo, "name")
    assert problem.message.startswith("name 'embedder' differs from its folder 'emb'")


def test_spec_name_differs_from_folder(repo: Path) -> None:
    (repo / "emb").rename(repo / "embedder")
    found = problems(repo)
    assert {(p.kind, p.where) for p in found} == {("name", "1/model.json"), ("name", "config.pbtxt")}


def test_stale_render_after_editing_model_json(repo: Path) -> None:
    set_spec(repo, "emb", batching__max_queue_delay_us=100)
    problem = only(repo, "stale")
    assert problem.field == "dynamic_batching"
    assert "max_queue_delay_microseconds: 2000" in problem.message
    assert "max_queue_delay_microseconds: 100" in problem.message
    assert "ds-triton render --model emb" in problem.message


def test_hand_edit_of_config_is_stale(repo: Path) -> None:
    edit(repo / "emb" / "config.pbtxt", "max_batch_size: 64", "max_batch_size: 32")
    message = only(repo, "stale").message
    assert message.startswith("max_batch_size differs from model.json's render: config.pbtxt has "
                              "max_batch_size: 32, model.json renders max_batch_size: 64")


def test_missing_and_foreign_files(repo: Path) -> None:
    (repo / "emb" / "1" / "model.py").write_text(SHIM_SOURCE + "\nprint('custom')\n")
    (repo / "gen" / "1" / "model.json").unlink()
    (repo / "stray").mkdir()
    found = {(p.model, p.where, p.kind) for p in problems(repo)}
    assert found == {
        ("emb", "1/model.py", "layout"),
        ("gen", "1/model.json", "layout"),
        ("stray", "1/model.py", "layout"),
        ("stray", "config.pbtxt", "layout"),
        ("stray", "1/model.json", "layout"),
    }


def test_invalid_model_json_names_the_key(repo: Path) -> None:
    set_spec(repo, "emb", embedding__pooling="max")
    problem = only(repo, "spec")
    assert "embedding.pooling must be one of" in problem.message and problem.where == "1/model.json"


# -- queue policy against the latency budget -------------------------------------


@pytest.fixture
def budgeted(repo: Path) -> Path:
    """``emb`` with a 100 ms latency budget on two instances, rendered."""
    set_spec(repo, "emb", batching__latency_budget_ms=100, deployment__instances_per_device=2)
    rerender(repo, "emb")
    return repo


def batcher(repo: Path) -> Path:
    return repo / "emb" / "config.pbtxt"


def test_rendered_queue_policy_passes(budgeted: Path) -> None:
    text = batcher(budgeted).read_text()
    assert "default_timeout_microseconds: 50000" in text and "max_queue_size: 32" in text
    assert problems(budgeted) == []


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("default_timeout_microseconds: 50000", "default_timeout_microseconds: 500000",
         "queue timeout 500000 us exceeds batching.latency_budget_ms (100 ms)"),
        ("    default_timeout_microseconds: 50000\n    allow_timeout_override: true\n", "",
         "no queue timeout although model.json sets batching.latency_budget_ms (100 ms)"),
        ("    max_queue_size: 32\n", "", "max_queue_size is unbounded although model.json sets"),
        ("max_queue_delay_microseconds: 2000", "max_queue_delay_microseconds: 60000",
         "the batcher may hold a request 60000 us to fill a batch (max_queue_delay_microseconds), "
         "not less than its queue timeout 50000 us"),
        ("allow_timeout_override: true", "allow_timeout_override: true\n    timeout_action: DELAY",
         "timeout_action DELAY runs expired requests late"),
    ],
    ids=["timeout-over-budget", "no-timeout", "unbounded", "delay-over-timeout", "delay-action"],
)
def test_queue_policy_against_the_budget(budgeted: Path, old: str, new: str, message: str) -> None:
    edit(batcher(budgeted), old, new)
    problem = only(budgeted, "queue")  # reported once, at its cause (not again as a stale render)
    assert message in problem.message and problem.field == "dynamic_batching"


def test_no_queue_policy_on_a_single_instance(budgeted: Path) -> None:
    set_spec(budgeted, "emb", deployment__instances_per_device=1)
    rerender(budgeted, "emb")
    assert "Triton 2.51 then stops prefetching batches" in only(budgeted, "queue").message
    # Without a budget nothing is rendered, and nothing is wrong.
    set_spec(budgeted, "emb", batching__latency_budget_ms=None)
    rerender(budgeted, "emb")
    assert "default_queue_policy" not in batcher(budgeted).read_text() and problems(budgeted) == []


def test_an_override_without_a_timeout_does_nothing(budgeted: Path) -> None:
    set_spec(budgeted, "emb", batching__queue_timeout_us=0)
    rerender(budgeted, "emb")
    assert "allow_timeout_override" not in batcher(budgeted).read_text()
    edit(batcher(budgeted), "max_queue_size: 32", "max_queue_size: 32\n    allow_timeout_override: true")
    found = {p.message.split(":")[0] for p in problems(budgeted)}
    assert "allow_timeout_override has no effect without default_timeout_microseconds" in found


def test_explicit_queue_settings_that_break_the_budget_are_refused(budgeted: Path) -> None:
    set_spec(budgeted, "emb", batching__queue_timeout_us=250_000)
    rerender(budgeted, "emb")
    assert "exceeds batching.latency_budget_ms (100 ms)" in only(budgeted, "queue").message
    assert main(["add-model", "m2", "--task", "embedding", "--checkpoint", MINILM, "--instances", "2",
                 "--repository", str(budgeted), "--latency-budget-ms", "100",
                 "--queue-timeout-us", "250000"]) == 1


# -- model.json type errors: one [spec] line, never a traceback ---------------------


def test_a_wrongly_typed_value_is_one_spec_line_in_check_and_render(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    set_spec(repo, "emb", batching__max_batch_size="64")
    line = 'emb/1/model.json: [spec] batching.max_batch_size must be an integer, got "64" (a string)'
    assert main(["check", str(repo), "--cores", "4"]) == 1
    assert capsys.readouterr().out.splitlines() == [line]
    assert main(["render", str(repo)]) == 1
    out = capsys.readouterr()
    assert out.err.splitlines() == [f"{line} (not rendered)"]
    assert "gen: up to date" in out.out


def test_a_string_false_is_not_true(repo: Path) -> None:
    set_spec(repo, "emb", embedding__truncate="false")
    message = only(repo, "spec").message
    assert message == 'embedding.truncate must be true or false, got "false" (a string)'


def test_serving_reports_bad_specs_and_leaves_them_alone(repo: Path) -> None:
    set_spec(repo, "emb", deployment__instances_per_device="2")
    expected = ('emb/1/model.json: [spec] deployment.instances_per_device must be an integer, got "2" '
                "(a string)")
    assert [str(p) for p in spec_problems(repo)] == [expected]
    # Re-rendering for this machine's GPUs skips it instead of stopping `ds-triton serve`.
    set_spec(repo, "gen", deployment__device="gpu", deployment__gpus="all")
    assert resolve_gpus_for_serving(repo, [0, 1]) == ["gen"]
