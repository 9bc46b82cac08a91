"""Every bad input refused at the door: exit code 2, exactly one ``error:`` line, nothing changed.

A table of bad commands across recipes, run directories, checkpoints, evaluation, data, the
gallery index, plotting, compatible training, benchmarks and the launcher. Each case runs in
process through ``selfsup.cli.main(argv)`` (a subprocess costs seconds of imports per case; the
few behaviours only a real process shows are in ``test_pretrain_cli`` and ``tests/distributed``), against
shared fixtures built once: a tiny trained run (MoCo v1, digits classes 0-4), a gallery index
built from it (226 items), a ``.beton`` and a damaged copy, feature files, damaged checkpoints,
histories and index folders. Every file under the workspace is snapshotted (size, mtime, mode)
before each case and must be unchanged after it, with no file added: a refused command leaves no
trace. The working directory is the workspace, so default output folders would show up too.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ..conftest import ROOT, tiny_recipe

pytestmark = pytest.mark.slow


def _ok_recipe() -> dict:
    return tiny_recipe(**{"train.max_steps": 2, "name": "ok"})


def _old_recipe() -> dict:
    # The run of the fixture: MoCo v1 (resolved at load: linear head, T 0.07) on digits 0-4.
    return tiny_recipe(
        **{
            "name": "old",
            "method": {"name": "moco", "version": "v1", "queue_size": 32, "dim": 16, "bn_group": 8},
            "data.classes": [0, 1, 2, 3, 4],
            "data.train_fraction": 0.2,
            "train.max_steps": 2,
        }
    )


def _snapshot(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """The shared workspace; the working directory while the cases run."""
    from selfsup.cli import main

    ws = tmp_path_factory.mktemp("bad_inputs")
    old_cwd, old_cache = os.getcwd(), os.environ.get("SELFSUP_DATA_CACHE")
    os.chdir(ws)
    os.environ["SELFSUP_DATA_CACHE"] = str(ws / "cache")
    try:
        (ws / "ok.yaml").write_text(yaml.safe_dump(_ok_recipe()))
        (ws / "moco.yaml").write_text(
            yaml.safe_dump(tiny_recipe(**{"method": {"name": "moco", "queue_size": 32}, "name": "m"}))
        )
        (ws / "old.yaml").write_text(yaml.safe_dump(_old_recipe()))
        assert main(["pretrain", str(ws / "old.yaml"), "--out", str(ws / "run"), "--no-eval"]) == 0
        enc = str(ws / "run" / "encoder.pt")
        assert main(["index", "build", "--index", str(ws / "idx"), "--ckpt", enc]) == 0

        # files that are not what they claim to be
        (ws / "afile").write_text("not a folder\n")
        (ws / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
        (ws / "empty.yaml").write_text("")
        (ws / "comments.yaml").write_text("# nothing but a comment\n")
        (ws / "list.yaml").write_text("- data\n- model\n")
        (ws / "broken.yaml").write_text("data: {source: [digits\n")
        (ws / "section.yaml").write_text("data: 5\n")
        (ws / "recipes").mkdir()
        (ws / "corrupt.pt").write_bytes(os.urandom(2000))
        torch.save({"format": 1, "encoder": {"w": torch.zeros(2)}}, ws / "noarch.pt")
        torch.save([1, 2, 3], ws / "notckpt.pt")
        ck = torch.load(enc, weights_only=False)
        torch.save({k: v for k, v in ck.items() if k != "recipe"}, ws / "bare.pt")

        # a run whose checkpoint is damaged; runs with damaged histories and scores
        shutil.copytree(ws / "run", ws / "run_corrupt")
        (ws / "run_corrupt" / "checkpoints" / "last.pt").write_bytes(b"\x00" * 100)
        for name, text in (("badhist", "[{"), ("dicthist", "{}"), ("emptyhist", "[]")):
            (ws / f"run_{name}").mkdir()
            (ws / f"run_{name}" / "history.json").write_text(text)
        (ws / "run_badscores").mkdir()
        (ws / "run_badscores" / "scores.json").write_text("{'epochs': ")

        # features and labels (the index holds 226 items of dim 32)
        rng = np.random.default_rng(0)
        meta = json.loads((ws / "idx" / "index.json").read_text())
        fp, n = meta["models"][0]["fingerprint"], meta["count"]
        np.save(ws / "f226.npy", rng.normal(size=(n, 32)).astype(np.float32))
        np.save(ws / "f450.npy", rng.normal(size=(450, 32)).astype(np.float32))
        np.save(ws / "f6.npy", rng.normal(size=(n, 6)).astype(np.float32))
        np.save(ws / "f1d.npy", np.zeros(10, dtype=np.float32))
        np.save(ws / "y10.npy", np.zeros(10, dtype=np.int64))
        np.save(ws / "ywrong.npy", (np.asarray(meta["labels"]) + 1) % 5)
        (ws / "fp.txt").write_text(fp)

        # damaged index copies
        shutil.copytree(ws / "idx", ws / "idx_badmeta")
        text = (ws / "idx_badmeta" / "index.json").read_text()
        (ws / "idx_badmeta" / "index.json").write_text(text[: len(text) // 2])
        shutil.copytree(ws / "idx", ws / "idx_badfile")
        gen = ws / "idx_badfile" / meta["index_file"]
        data = bytearray(gen.read_bytes())
        data[-9] ^= 0xFF
        gen.write_bytes(bytes(data))

        # a .beton (digits train, raw 32 px: ~4 MB) and a copy damaged in the middle, where the
        # sidecar's fingerprint (size and both ends) cannot see it; one truncated
        assert (
            main(
                [
                    "data",
                    "write",
                    "--source",
                    "digits",
                    "--mode",
                    "raw",
                    "--out",
                    str(ws / "d.beton"),
                    "--quiet",
                    "--workers",
                    "1",
                ]
            )
            == 0
        )
        for name in ("bad", "trunc"):
            shutil.copy(ws / "d.beton", ws / f"{name}.beton")
            shutil.copy(ws / "d.beton.json", ws / f"{name}.beton.json")
        raw = bytearray((ws / "bad.beton").read_bytes())
        for off in range(200_000, len(raw) - 200_000, 997):
            raw[off] ^= 0x5A
        (ws / "bad.beton").write_bytes(bytes(raw))
        with open(ws / "trunc.beton", "r+b") as f:
            f.truncate(len(raw) // 2)
        yield ws
    finally:
        os.chdir(old_cwd)
        if old_cache is None:
            os.environ.pop("SELFSUP_DATA_CACHE", None)
        else:
            os.environ["SELFSUP_DATA_CACHE"] = old_cache


OK = ["pretrain", "{ws}/ok.yaml", "--out", "{ws}/new", "--no-eval"]
MOCO = ["pretrain", "{ws}/moco.yaml", "--out", "{ws}/new", "--no-eval"]
ENC = "{ws}/run/encoder.pt"
RESUME = ["pretrain", "{ws}/old.yaml", "--out", "{ws}/run", "--resume", "--no-eval"]


def _set(*pairs: str, base=OK) -> list[str]:
    return [*base, *[a for p in pairs for a in ("--set", p)]]


# (id, argv, text the error line must contain)
CASES = [
    # -- recipe values, checked when the recipe is loaded ------------------------------------
    ("image_size_0", _set("data.image_size=0"), "data.image_size"),
    ("image_size_negative", _set("data.image_size=-3"), "data.image_size"),
    ("num_workers_negative", _set("data.num_workers=-1"), "data.num_workers"),
    ("batch_size_1", _set("data.batch_size=1"), "data.batch_size"),
    ("batch_size_0", _set("data.batch_size=0"), "data.batch_size"),
    ("views_0", _set("data.views=0"), "data.views"),
    ("views_1_simclr", _set("data.views=1"), "SimCLR needs 2 views"),
    ("train_fraction_0", _set("data.train_fraction=0"), "data.train_fraction"),
    ("train_fraction_big", _set("data.train_fraction=1.5"), "data.train_fraction"),
    ("classes_empty", _set("data.classes=[]"), "data.classes"),
    ("classes_negative", _set("data.classes=[-1]"), "data.classes"),
    ("classes_twice", _set("data.classes=[1, 1]"), "twice"),
    ("mean_length", _set("data.mean=[0.5]"), "data.mean"),
    ("std_zero", _set("data.std=[0.2, 0.2, 0]"), "data.std[2]"),
    ("crop_scale_one_value", _set("data.augment.crop_scale=[0.5]"), "data.augment.crop_scale"),
    ("crop_scale_reversed", _set("data.augment.crop_scale=[0.5, 0.2]"), "min <= max"),
    ("crop_scale_zero", _set("data.augment.crop_scale=[0, 1]"), "0 < min"),
    ("flip_p_big", _set("data.augment.flip_p=1.5"), "data.augment.flip_p"),
    ("jitter_length", _set("data.augment.jitter=[0.4]"), "data.augment.jitter"),
    ("jitter_hue", _set("data.augment.jitter=[0.4, 0.4, 0.4, 0.9]"), "hue"),
    ("blur_sigma_reversed", _set("data.augment.blur_sigma=[2, 1]"), "blur_sigma"),
    ("local_views_negative", _set("data.augment.local_views=-1"), "local_views"),
    ("preset_typo", _set("data.augment.preset=simclrr"), "did you mean 'simclr'"),
    ("augment_key_typo", _set("data.augment.flip=0.5"), "flip_p"),
    ("loader_unknown", _set("data.loader=dali"), "data.loader"),
    ("source_unknown", _set("data.source=mnist"), "data.source"),
    ("source_needs_path", _set("data.source=cifar10"), "data.path is required"),
    ("source_path_missing", _set("data.source=imagefolder", "data.path={ws}/nope"), "not found"),
    ("width_0", _set("model.width=0"), "model.width"),
    ("width_negative", _set("model.width=-8"), "model.width"),
    ("backbone_typo", _set("model.backbone=resnet181"), "timm has no model"),
    ("backbone_empty", _set("model.backbone="), "model.backbone"),
    ("norm_unknown", _set("model.norm=gn"), "model.norm"),
    ("cifar_stem_not_bool", _set("model.cifar_stem=maybe"), "true or false"),
    ("method_unknown", _set("method.name=simclrr"), "unknown method"),
    ("simclr_temperature", _set("method.temperature=-1"), "method.temperature"),
    ("simclr_proj_dim", _set("method.proj_dim=0"), "method.proj_dim"),
    ("moco_queue_0", _set("method.queue_size=0", base=MOCO), "method.queue_size"),
    ("moco_temperature_0", _set("method.temperature=0", base=MOCO), "method.temperature"),
    ("moco_momentum", _set("method.momentum=1.5", base=MOCO), "method.momentum"),
    ("moco_version", _set("method.version=v3", base=MOCO), "method.version"),
    ("moco_dim_0", _set("method.dim=0", base=MOCO), "method.dim"),
    ("moco_bn_group_0", _set("method.bn_group=0", base=MOCO), "method.bn_group"),
    ("moco_bn_group_divides", _set("method.bn_group=5", base=MOCO), "method.bn_group=5"),
    ("moco_bn_splits_renamed", _set("method.bn_splits=2", base=MOCO), "replaced: method.bn_group"),
    ("moco_key_typo", _set("method.queue=10", base=MOCO), "queue_size"),
    ("optim_name", _set("optim.name=adagrad"), "adamw"),
    ("lr_negative", _set("optim.lr=-0.1"), "optim.lr"),
    ("lr_zero", _set("optim.lr=0"), "optim.lr"),
    ("lr_text", _set("optim.lr=fast"), "expected a number"),
    ("lr_nan", _set("optim.lr=.nan"), "finite"),
    ("scale_lr_renamed", _set("optim.scale_lr=false"), "replaced: optim.lr_scaling"),
    ("lr_scaling_unknown", _set("optim.lr_scaling=quadratic"), "optim.lr_scaling"),
    ("lr_base_batch_0", _set("optim.lr_base_batch=0"), "optim.lr_base_batch"),
    ("momentum_big", _set("optim.momentum=1.5"), "optim.momentum"),
    ("weight_decay_negative", _set("optim.weight_decay=-1"), "optim.weight_decay"),
    ("betas_length", _set("optim.betas=[0.9]"), "optim.betas"),
    ("warmup_negative", _set("optim.warmup_epochs=-1"), "optim.warmup_epochs"),
    ("warmup_longer_than_run", _set("optim.warmup_epochs=5"), "longer than train.epochs"),
    ("min_lr_ratio_big", _set("optim.min_lr_ratio=2"), "optim.min_lr_ratio"),
    ("schedule_unknown", _set("optim.schedule=exponential"), "optim.schedule"),
    ("step_schedule_without_epochs", _set("optim.schedule=step"), "optim.step_epochs"),
    ("step_gamma_above_one", _set("optim.step_gamma=2"), "optim.step_gamma"),
    ("reference_unknown_key", _set("reference.papr=x"), "papr"),
    ("lars_eta_0", _set("optim.lars_eta=0"), "optim.lars_eta"),
    ("optim_key_typo", _set("optim.lrr=0.1"), "did you mean 'lr'"),
    ("epochs_0", _set("train.epochs=0"), "train.epochs"),
    ("epochs_fraction", _set("train.epochs=2.5"), "integer"),
    ("max_steps_negative", _set("train.max_steps=-1"), "train.max_steps"),
    ("max_steps_0", _set("train.max_steps=0"), "train.max_steps"),
    ("grad_accum_0", _set("train.grad_accum=0"), "train.grad_accum"),
    ("grad_accum_not_dividing", _set("train.grad_accum=3"), "must divide evenly"),
    ("precision_unknown", _set("train.precision=fp8"), "train.precision"),
    ("ckpt_every_negative", _set("train.ckpt_every_steps=-1"), "train.ckpt_every_steps"),
    ("log_every_0", _set("train.log_every=0"), "train.log_every"),
    ("eval_unknown", _set("eval.run=[bogus]"), "eval.run"),
    ("eval_twice", _set("eval.run=[knn, knn]"), "twice"),
    ("knn_k_empty", _set("eval.knn.k=[]"), "eval.knn.k"),
    ("knn_k_0", _set("eval.knn.k=[0]"), "eval.knn.k"),
    ("linear_epochs_0", _set("eval.linear.epochs=0"), "eval.linear.epochs"),
    ("recipe_eval_batch_0", _set("eval.batch_size=0"), "eval.batch_size"),
    ("knn_temperature_0", _set("eval.knn.temperature=0"), "eval.knn.temperature"),
    ("seed_negative", _set("seed=-1"), "seed"),
    ("name_empty", _set("name="), "name"),
    ("name_slash", _set("name=a/b"), "name"),
    ("positives_unknown", _set("positives=[{name: bogus}]"), "bogus"),
    ("positives_not_list", _set("positives=5"), "expected a list"),
    ("compat_unknown", _set("compat={name: bogus}"), "bogus"),
    ("top_key_typo", _set("optimm.lr=1"), "did you mean 'optim'"),
    ("set_without_value", [*OK, "--set", "optim.lr"], "key=value"),
    ("set_bad_list_index", _set("eval.run.x=knn"), "list index"),
    ("set_into_value", _set("data.image_size.x=1"), "not a section"),
    # -- recipe files ----------------------------------------------------------------------------
    ("recipe_not_utf8", ["pretrain", "{ws}/latin1.yaml", "--out", "{ws}/new"], "not UTF-8"),
    ("recipe_empty", ["pretrain", "{ws}/empty.yaml", "--out", "{ws}/new"], "is empty"),
    ("recipe_only_comments", ["pretrain", "{ws}/comments.yaml", "--out", "{ws}/new"], "is empty"),
    ("recipe_a_list", ["pretrain", "{ws}/list.yaml", "--out", "{ws}/new"], "mapping"),
    ("recipe_bad_yaml", ["pretrain", "{ws}/broken.yaml", "--out", "{ws}/new"], "not valid YAML"),
    ("recipe_missing", ["pretrain", "{ws}/missing.yaml", "--out", "{ws}/new"], "not found"),
    ("recipe_is_folder", ["pretrain", "{ws}/recipes", "--out", "{ws}/new"], "is a folder"),
    ("recipe_section_scalar", ["pretrain", "{ws}/section.yaml", "--out", "{ws}/new"], "expected a mapping"),
    # -- run folders and resuming ----------------------------------------------------------------
    ("out_is_file", ["pretrain", "{ws}/ok.yaml", "--out", "{ws}/afile"], "is a file"),
    ("out_under_file", ["pretrain", "{ws}/ok.yaml", "--out", "{ws}/afile/sub"], "which is a file"),
    ("resume_nothing", ["pretrain", "{ws}/ok.yaml", "--out", "{ws}/none", "--resume"], "nothing to resume"),
    ("run_exists", ["pretrain", "{ws}/old.yaml", "--out", "{ws}/run"], "--resume"),
    ("resume_batch_changed", [*RESUME, "--set", "data.batch_size=8"], "data.batch_size (16 -> 8)"),
    ("resume_lr_and_seed", [*RESUME, "--set", "optim.lr=0.2", "--set", "seed=3"], "optim.lr"),
    ("resume_width", [*RESUME, "--set", "model.width=8"], "model.width"),
    ("resume_method", [*RESUME, "--set", "method.version=v2"], "method.version"),
    (
        "resume_corrupt_checkpoint",
        ["pretrain", "{ws}/old.yaml", "--out", "{ws}/run_corrupt", "--resume"],
        "unreadable or corrupt",
    ),
    # -- checkpoints and evaluation --------------------------------------------------------------
    ("eval_ckpt_missing", ["eval", "knn", "--ckpt", "{ws}/missing.pt"], "not found"),
    ("eval_ckpt_corrupt", ["eval", "knn", "--ckpt", "{ws}/corrupt.pt"], "corrupt"),
    ("eval_ckpt_no_arch", ["eval", "knn", "--ckpt", "{ws}/noarch.pt"], "no architecture"),
    ("eval_ckpt_not_selfsup", ["eval", "knn", "--ckpt", "{ws}/notckpt.pt"], "not a selfsup checkpoint"),
    ("eval_ckpt_no_recipe", ["eval", "retrieval", "--ckpt", "{ws}/bare.pt"], "pass --data"),
    ("eval_k_0", ["eval", "knn", "--ckpt", ENC, "--k", "0"], "--k"),
    ("eval_k_negative", ["eval", "knn", "--ckpt", ENC, "--k", "20", "-5"], "--k"),
    ("eval_batch_0", ["eval", "linear", "--ckpt", ENC, "--batch-size", "0"], "--batch-size"),
    ("eval_epochs_0", ["eval", "linear", "--ckpt", ENC, "--epochs", "0"], "--epochs"),
    ("eval_lr_negative", ["eval", "linear", "--ckpt", ENC, "--lr", "-1"], "--lr"),
    ("eval_temperature_0", ["eval", "knn", "--ckpt", ENC, "--temperature", "0"], "--temperature"),
    ("eval_data_unknown", ["eval", "knn", "--ckpt", ENC, "--data", "mnist"], "unknown source"),
    ("eval_data_missing", ["eval", "knn", "--ckpt", ENC, "--data", "imagefolder:{ws}/nope"], "not found"),
    ("eval_out_is_file", ["eval", "knn", "--ckpt", ENC, "--out", "{ws}/afile"], "is a file"),
    # -- data ------------------------------------------------------------------------------------
    ("info_missing", ["data", "info", "{ws}/missing.beton"], "not found"),
    ("info_not_beton", ["data", "info", "{ws}/afile"], "no sidecar"),
    ("info_truncated", ["data", "info", "{ws}/trunc.beton"], "truncated"),
    ("info_verify_corrupt", ["data", "info", "--verify", "{ws}/bad.beton"], "rows are corrupt"),
    (
        "train_on_corrupt_beton",
        _set("data.source=beton", "data.path={ws}/bad.beton", "data.image_size=32"),
        "is corrupt",
    ),
    (
        "write_source_unknown",
        ["data", "write", "--source", "mnist", "--out", "{ws}/x.beton"],
        "unknown source",
    ),
    (
        "write_source_beton",
        ["data", "write", "--source", "beton", "--out", "{ws}/x.beton"],
        "already a .beton",
    ),
    ("write_not_beton_name", ["data", "write", "--source", "digits", "--out", "{ws}/x.txt"], "end in .beton"),
    ("write_needs_path", ["data", "write", "--source", "imagefolder", "--out", "{ws}/x.beton"], "data.path"),
    (
        "write_quality_0",
        ["data", "write", "--source", "digits", "--quality", "0", "--out", "{ws}/x.beton"],
        "quality",
    ),
    # -- gallery index ---------------------------------------------------------------------------
    ("build_index_is_file", ["index", "build", "--index", "{ws}/afile", "--ckpt", ENC], "is a file"),
    ("build_exists", ["index", "build", "--index", "{ws}/idx", "--ckpt", ENC], "already exists"),
    (
        "build_ckpt_missing",
        ["index", "build", "--index", "{ws}/i2", "--ckpt", "{ws}/missing.pt"],
        "not found",
    ),
    (
        "build_batch_0",
        ["index", "build", "--index", "{ws}/i2", "--ckpt", ENC, "--batch-size", "0"],
        "--batch-size",
    ),
    (
        "build_feats_missing",
        ["index", "build", "--index", "{ws}/i2", "--feats", "{ws}/no.npy", "--fingerprint", "x"],
        "does not exist",
    ),
    (
        "build_feats_not_npy",
        ["index", "build", "--index", "{ws}/i2", "--feats", "{ws}/afile", "--fingerprint", "x"],
        "not a readable",
    ),
    (
        "build_feats_1d",
        ["index", "build", "--index", "{ws}/i2", "--feats", "{ws}/f1d.npy", "--fingerprint", "x"],
        "[N, D]",
    ),
    (
        "build_feats_no_fingerprint",
        ["index", "build", "--index", "{ws}/i2", "--feats", "{ws}/f226.npy"],
        "--fingerprint",
    ),
    (
        "build_labels_shape",
        [
            "index",
            "build",
            "--index",
            "{ws}/i2",
            "--feats",
            "{ws}/f226.npy",
            "--fingerprint",
            "x",
            "--labels",
            "{ws}/y10.npy",
        ],
        "--labels",
    ),
    ("query_no_index", ["index", "query", "--index", "{ws}/nope", "--ckpt", ENC], "no gallery index"),
    (
        "query_out_is_file",
        ["index", "query", "--index", "{ws}/idx", "--ckpt", ENC, "--out", "{ws}/afile"],
        "is a file",
    ),
    ("query_k_0", ["index", "query", "--index", "{ws}/idx", "--ckpt", ENC, "-k", "0"], "-k"),
    (
        "query_incompatible_model",
        ["index", "query", "--index", "{ws}/idx", "--feats", "{ws}/f226.npy", "--fingerprint", "other"],
        "not compatible",
    ),
    (
        "query_fewer_dims",
        ["index", "query", "--index", "{ws}/idx", "--feats", "{ws}/f6.npy", "--fingerprint", "@fp"],
        "cannot be compared",
    ),
    (
        "query_exclude_self_other_data",
        ["index", "query", "--index", "{ws}/idx", "--ckpt", ENC, "--data", "digits", "--exclude-self"],
        "holds digits (test split, classes [0, 1, 2, 3, 4], 226 items",
    ),
    (
        "query_other_label_space",
        ["index", "query", "--index", "{ws}/idx", "--ckpt", ENC, "--data", "digits"],
        "label space",
    ),
    (
        "upgrade_budget_0",
        ["index", "upgrade", "--index", "{ws}/idx", "--ckpt", ENC, "--budget", "0"],
        "--budget",
    ),
    (
        "upgrade_budget_big",
        ["index", "upgrade", "--index", "{ws}/idx", "--ckpt", ENC, "--budget", "1.5"],
        "--budget",
    ),
    (
        "upgrade_commit_every_0",
        ["index", "upgrade", "--index", "{ws}/idx", "--ckpt", ENC, "--commit-every", "0"],
        "--commit-every",
    ),
    (
        "upgrade_other_data",
        ["index", "upgrade", "--index", "{ws}/idx", "--ckpt", ENC, "--data", "digits", "--budget", "0.5"],
        "holds digits (test split, classes [0, 1, 2, 3, 4], 226 items",
    ),
    (
        "upgrade_other_split",
        ["index", "upgrade", "--index", "{ws}/idx", "--ckpt", ENC, "--split", "train"],
        "holds digits (test split",
    ),
    (
        "upgrade_feats_450_rows",
        [
            "index",
            "upgrade",
            "--index",
            "{ws}/idx",
            "--feats",
            "{ws}/f450.npy",
            "--fingerprint",
            "new",
            "--compatible-with",
            "@fp",
        ],
        "has 450 items",
    ),
    (
        "upgrade_feats_wrong_labels",
        [
            "index",
            "upgrade",
            "--index",
            "{ws}/idx",
            "--feats",
            "{ws}/f226.npy",
            "--fingerprint",
            "new",
            "--compatible-with",
            "@fp",
            "--labels",
            "{ws}/ywrong.npy",
        ],
        "labels differ",
    ),
    (
        "upgrade_incompatible",
        ["index", "upgrade", "--index", "{ws}/idx", "--feats", "{ws}/f226.npy", "--fingerprint", "other"],
        "not compatible",
    ),
    (
        "upgrade_feats_with_data",
        [
            "index",
            "upgrade",
            "--index",
            "{ws}/idx",
            "--feats",
            "{ws}/f226.npy",
            "--fingerprint",
            "n",
            "--data",
            "digits",
        ],
        "--data and --split",
    ),
    ("info_no_index", ["index", "info", "--index", "{ws}/nope"], "no gallery index"),
    ("info_index_is_file", ["index", "info", "--index", "{ws}/afile"], "is a file"),
    ("info_corrupt_metadata", ["index", "info", "--index", "{ws}/idx_badmeta"], "corrupt"),
    ("info_corrupt_generation", ["index", "info", "--index", "{ws}/idx_badfile"], "corrupt"),
    # -- plotting --------------------------------------------------------------------------------
    ("curves_missing", ["plot", "curves", "{ws}/nope"], "not a folder"),
    ("curves_on_file", ["plot", "curves", "{ws}/afile"], "not a folder"),
    ("curves_no_history", ["plot", "curves", "{ws}/recipes"], "no history.json"),
    ("curves_corrupt_history", ["plot", "curves", "{ws}/run_badhist"], "damaged"),
    ("curves_history_not_list", ["plot", "curves", "{ws}/run_dicthist"], "not a selfsup history"),
    ("curves_history_empty", ["plot", "curves", "{ws}/run_emptyhist"], "no logged steps"),
    ("scores_missing", ["plot", "scores", "{ws}/nope"], "not found"),
    ("scores_corrupt", ["plot", "scores", "{ws}/run_badscores"], "not valid JSON"),
    ("scores_none_written", ["plot", "scores", "{ws}/run"], "not found"),
    # -- compatible training, benchmarks, launcher -----------------------------------------------
    ("compat_no_section", ["compat", "train", "{ws}/ok.yaml", "--old", ENC], "no compat section"),
    (
        "compat_old_missing",
        [
            "compat",
            "train",
            str(ROOT / "recipes/compat/new_bct.yaml"),
            "--old",
            "{ws}/missing.pt",
            "--out",
            "{ws}/new",
        ],
        "train the old model first",
    ),
    (
        "compat_bt2_teacher_missing",
        [
            "compat",
            "train",
            str(ROOT / "recipes/compat/new_bt2.yaml"),
            "--old",
            ENC,
            "--out",
            "{ws}/new",
            "--set",
            "compat.teacher={ws}/missing.pt",
            "--set",
            "data.image_size=16",
            "--set",
            "model.width=4",
            "--set",
            "data.train_fraction=0.1",
        ],
        "independently trained NEW model",
    ),
    ("bench_loader_size", ["bench", "loader", "--size", "4"], "--size"),
    ("bench_step_batch", ["bench", "step", "--batch", "1"], "--batch"),
    ("bench_retrieval_k", ["bench", "retrieval", "-k", "0"], "-k"),
    ("launch_without_command", ["launch", "--num_processes", "2"], "needs a selfsup command"),
]


def _argv(case_argv: list[str], ws: Path) -> list[str]:
    fp = (ws / "fp.txt").read_text()
    return [a.replace("{ws}", str(ws)).replace("@fp", fp) for a in case_argv]


def test_the_table_is_large_and_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 100, len(ids)


@pytest.mark.parametrize("case_id,argv,needle", CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_nothing_changed(ws, capfd, case_id, argv, needle):
    from selfsup.cli import main

    before = _snapshot(ws)
    capfd.readouterr()
    rc = main(_argv(argv, ws))
    out, err = capfd.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert rc == 2, (rc, err[-2000:])
    assert len(errors) == 1 and lines[-1] == errors[0], err[-2000:]
    assert "Traceback" not in err and "Traceback" not in out
    assert needle in errors[0], (needle, errors[0])
    assert _snapshot(ws) == before, "a refused command changed files"
