"""Build the device kit: what a bare GPU machine needs to run a recipe, in carries of at most 64 MiB each.

Why: the lent GPU machine has PyTorch, transformers and peft but none of the Debian packages (no
flite, no Asterisk prompts, no LibriVox, no sonic-pi noise), no model weights and no network, and each
call carries at most 64 MiB *including the working tree* (~43 MB of committed checkpoints and docs since round 31 added two ensemble members). The
whisper-tiny.en weights alone compress to ~68 MB, so the kit is split in N parts (2 while they fit, more as
the working tree grows) sent in N calls to the same warm machine (docs/training.md, "GPU run"):

The payload (``training/kit_payload.py``) is the model archive followed by the clean TTS speech of the recipe's
plan (flite, rendered here and stored as Opus, since flite cannot run there), cut over the parts as one stream:

* ``.gpu/part1``: the first payload slice and the Python wheels the machine lacks;
  ``scripts/device_stage1.sh`` stages them under ``.gpu-stage/`` (ignored, so kept between calls).
* ``.gpu/part2`` .. ``part{N-1}`` (only when N > 2): further slices, staged by
  ``scripts/device_stage1.sh .gpu/partK``.
* ``.gpu/part{N}``: the last slice, the held-out data (reserved Allison prompts, LibriVox reader, the extra
  texts, a sonic-pi noise subset) and ``kit.json`` (checksums, part count, recipe);
  ``scripts/device_train.sh`` checks and unpacks everything and runs the recipe.

Usage: ``python scripts/device_kit.py [--config training/configs/tiny-en-gpu.toml] [--variant OTHER.toml ...] [--train rl]``
(variants: recipes with the same ``[data]``, trained beside the first on its clips); it prints each part's
size against the limit and the calls to make.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from training import kit_payload
from training.config import DataConfig, load_config
from training.variants import variant_dirs

LIMIT = 64 * 2**20  # bytes one device call carries, working tree included
MARGIN = 256 * 2**10  # kept free for files committed between building and sending
BLOCK = 4096  # sizes are counted in whole blocks, as the device tool counts them
KIT = ROOT / ".gpu"

#: Recipe path fields that point into the kit, and the Debian (or shared) path they are built from.
SYSTEM_PATHS = {
    "reserved_prompts": "/work/shared/data/eval-reserved-prompts.txt",
    "asterisk_dir": "/usr/share/asterisk/sounds/en_US_f_Allison",
    "asterisk_transcripts": "/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz",
    "librivox_dir": "/usr/share/pocketsphinx/test/data/librivox",
    "sonic_pi_dir": "/usr/share/sonic-pi/samples",
}

#: Python distributions the GPU image lacks (docs/.library device KINDS.md lists what it has), by import need.
WHEELS = (
    "pydantic", "pydantic_core", "annotated-types", "typing-inspection", "pydantic-settings", "python-dotenv",
    "jiwer", "rapidfuzz", "soundfile", "cffi", "pycparser", "soxr", "pyloudnorm", "whisper_normalizer",
    "indic-numtowords", "text2num", "more-itertools", "fastapi", "starlette", "uvicorn",
)
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64", "any")
NOISE_MAX_BYTES = 2_500_000  # sonic-pi subset for the noise-only training clips: at most this much...
NOISE_MIN_BYTES = 500_000  # ...and in a 2-part kit whatever room is left, but never less than this
OPUS_KBPS_NOTE = "Opus (libsndfile default bitrate) at 16 kHz"


def working_tree_bytes() -> int:
    """What every call sends besides the carried paths: tracked and untracked-not-ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         check=True, capture_output=True).stdout
    return sum(disk_bytes(ROOT / p) for p in out.decode().split("\0") if p and (ROOT / p).is_file())


#: ``[data].extra_texts`` of a GPU recipe name ``.gpu/data/texts/FILE``; the kit carries them from here.
KIT_TEXTS = ".gpu/data/texts/"
SYSTEM_TEXTS = {"devil.dict.dz": "/usr/share/dictd/devil.dict.dz"}


def system_config(cfg: DataConfig) -> DataConfig:
    """The recipe's data settings with the kit paths mapped back to this machine's packages."""
    texts = [SYSTEM_TEXTS[p.removeprefix(KIT_TEXTS)] if p.startswith(KIT_TEXTS) else p for p in cfg.extra_texts]
    return cfg.model_copy(update={**{k: v for k, v in SYSTEM_PATHS.items() if k in DataConfig.model_fields},
                                  "extra_texts": texts})


def download_wheels(dest: Path, python: str = "3.12") -> list[Path]:
    """The missing distributions, at the versions installed here, for the GPU image's CPython."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WHEELS:
        spec = f"{name}=={metadata.version(name)}"
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", python, "--implementation", "cp", "-d", str(dest), spec]
        for platform in PLATFORMS:
            cmd += ["--platform", platform]
        subprocess.run(cmd, check=True)
    return sorted(dest.glob("*.whl"))


def model_archive(name: str) -> bytes:
    """The converted checkpoint folder as tar.xz (its safetensors are already fp16)."""
    from training.whisper import resolve_model

    folder = resolve_model(name)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:xz", preset=9) as tar:
        tar.add(folder, arcname=name)
    return buffer.getvalue()


def kit_models(cfg) -> list[str]:
    """The models the kit carries: the recipe's base model only (each costs ~3-6 calls of device time), so a
    recipe whose `train data` grades with another model is refused here, before the long build."""
    grade = cfg.data.grade_model
    if grade not in (None, cfg.sft.base_model):
        raise SystemExit(f"device_kit: [data].grade_model {grade!r} is not the recipe's base model "
                         f"{cfg.sft.base_model!r}; the kit carries that one only: grade with it (or leave it unset)")
    return [cfg.sft.base_model]


def clean_speech(data: DataConfig, dest: Path) -> dict[str, int]:
    """Render every TTS utterance of the recipe's plan with flite and store it as Opus in a tar."""
    import soundfile as sf
    from tqdm import tqdm

    from training.data import plan_clean
    from training.sources import ReservedGuard, read_audio, synthesise

    guard = ReservedGuard.from_files(data.reserved_prompts, data.asterisk_transcripts)
    tts = [u for utts in plan_clean(data, guard).values() for u in utts if u.audio_path is None]
    counts: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(dest, "w") as tar:
        for utt in tqdm(tts, desc="flite -> opus", unit="utt"):
            wav = Path(tmp) / "u.wav"
            synthesise(utt.text, utt.speaker.removeprefix("flite-"), wav)
            ogg = io.BytesIO()
            sf.write(ogg, read_audio(str(wav)), 16000, format="OGG", subtype="OPUS")
            info = tarfile.TarInfo(f"{utt.id.replace('/', '_')}.ogg")
            info.size = ogg.tell()
            ogg.seek(0)
            tar.addfile(info, ogg)
            counts[utt.speaker] = counts.get(utt.speaker, 0) + 1
    return counts


def held_out_data(data: DataConfig, dest: Path, noise_bytes: int) -> list[str]:
    """Reserved list, transcripts, the reserved Allison prompts, the LibriVox reader, the extra texts and
    ``noise_bytes`` of noise."""
    from training.sources import asterisk_utterances, read_asterisk_transcripts, read_reserved_names

    names = read_reserved_names(data.reserved_prompts)
    prompts = asterisk_utterances(data.asterisk_dir, read_asterisk_transcripts(data.asterisk_transcripts), names)
    members: list[tuple[Path, str]] = [
        (Path(data.reserved_prompts), "eval-reserved-prompts.txt"),
        (Path(data.asterisk_transcripts), "core-sounds-en.txt.gz"),
    ]
    allison = Path(data.asterisk_dir)
    members += [(Path(u.audio_path), f"asterisk/{Path(u.audio_path).relative_to(allison)}") for u in prompts]
    members += [(p, f"librivox/{p.name}") for p in sorted(Path(data.librivox_dir).iterdir()) if p.is_file()]
    members += [(Path(p), f"texts/{Path(p).name}") for p in data.extra_texts]  # the recipe plans from them there
    noise, total = [], 0
    for p in sorted(Path(data.sonic_pi_dir).glob("*.flac"), key=lambda p: p.stat().st_size):
        if total + p.stat().st_size > noise_bytes:
            break
        noise.append(p)
        total += p.stat().st_size
    members += [(p, f"sonic-pi/{p.name}") for p in noise]
    with tarfile.open(dest, "w:xz") as tar:
        for path, arcname in members:
            tar.add(path, arcname=arcname)
    return [a for _, a in members]


NOISE_SAFETY = 64 * 2**10  # tar headers and xz framing around the noise files


def plan_parts(archive: int, first_fixed: int, last_fixed: int, budget: int) -> tuple[int, list[int]]:
    """(noise bytes, payload bytes per part) for a kit whose parts each hold ``budget`` bytes.

    Why: every extra part is one more device call (~25 s of device time, and the machine must still be warm), so
    two parts are used while the noise subset can keep at least NOISE_MIN_BYTES beside them; the noise takes the
    room left, up to NOISE_MAX_BYTES. When two parts cannot hold that, the noise gets its full size and the archive
    is cut over as many parts as it needs. ``archive``: the payload (model archive and clean speech);
    ``first_fixed``: part 1's other files (wheels); ``last_fixed``: the last part's files besides the noise
    (the rest of the held-out data, kit.json).
    """
    if first_fixed > budget or last_fixed + NOISE_MIN_BYTES + NOISE_SAFETY > budget:
        raise SystemExit(f"device_kit: does not fit: a part holds {budget / 1e6:.1f} MB, part 1 needs "
                         f"{first_fixed / 1e6:.1f} MB and the last part {last_fixed / 1e6:.1f} MB before the payload")
    free = 2 * budget - first_fixed - last_fixed - archive - NOISE_SAFETY
    noise = min(NOISE_MAX_BYTES, free) if free >= NOISE_MIN_BYTES else NOISE_MAX_BYTES
    last_room = max(0, budget - last_fixed - noise - NOISE_SAFETY)
    slices = [min(archive, budget - first_fixed)]
    while archive - sum(slices) > last_room:
        slices.append(min(budget, archive - sum(slices)))
    slices.append(archive - sum(slices))
    return noise, slices


def disk_bytes(path: Path) -> int:
    """A file's size as the device tool counts it: whole 4-KiB blocks (2026-11-27, GPU run 3: a kit whose bytes
    summed to 63.8 MiB was refused as over 64 MiB; in blocks it was 64.4)."""
    return -(-path.stat().st_size // BLOCK) * BLOCK


def folder_bytes(folder: Path) -> int:
    return sum(disk_bytes(p) for p in folder.rglob("*") if p.is_file())


def build(config: Path, variants: tuple[Path, ...] = (), train: str = "sft") -> dict:
    cfg = load_config(config)
    (model,) = kit_models(cfg)  # before the long build
    variant_dirs([config, *variants], train)  # variants train on the recipe's clips: refuse before the long build
    if KIT.exists():
        shutil.rmtree(KIT)
    first, last = KIT / "first", KIT / "last"  # renamed part1 / partN once N is known
    last.mkdir(parents=True)
    tree = working_tree_bytes()
    budget = LIMIT - tree - MARGIN
    print(f"working tree {tree / 1e6:.1f} MB; each part may hold {budget / 1e6:.1f} MB", flush=True)

    wheels = download_wheels(first / "wheels")
    data = system_config(cfg.data)  # the recipe's sources, read from this machine's packages
    speakers = clean_speech(data, KIT / "clean.tar")
    payload, payload_fields = kit_payload.pack(model_archive(model), (KIT / "clean.tar").read_bytes())
    (KIT / "clean.tar").unlink()
    held_out_data(data, last / "data.tar.xz", noise_bytes=0)  # sized without noise, then rebuilt with it
    noise_bytes, slices = plan_parts(len(payload), folder_bytes(first), folder_bytes(last) + 4096, budget)
    data_members = held_out_data(data, last / "data.tar.xz", noise_bytes)
    n = len(slices)
    parts = [KIT / f"part{k}" for k in range(1, n + 1)]
    first.rename(parts[0])
    last.rename(parts[-1])
    for k, (part, piece) in enumerate(zip(parts, kit_payload.cut(payload, slices)), start=1):
        part.mkdir(exist_ok=True)
        (part / f"payload.{k}").write_bytes(piece)
    kit = {
        "recipe": str(config.relative_to(ROOT) if config.is_absolute() else config),
        "base_model": cfg.sft.base_model,
        "parts": n,
        **payload_fields,
        "wheels": [w.name for w in wheels],
        "clean_speech": {"utterances": speakers, "format": OPUS_KBPS_NOTE},
        "data": data_members,
        "noise_bytes_max": noise_bytes,
        "working_tree_bytes": tree,
        "limit_bytes": LIMIT,
    }
    (parts[-1] / "kit.json").write_text(json.dumps(kit, indent=2))
    for part in parts:
        size = tree + folder_bytes(part)
        print(f"{part.relative_to(ROOT)}: {folder_bytes(part) / 1e6:.1f} MB + tree = {size / 2**20:.1f} MiB "
              f"of {LIMIT / 2**20:.0f} MiB", flush=True)
        if size > LIMIT:
            raise SystemExit(f"device_kit: {part.name} is over the carry limit")
    print(f"noise subset: up to {noise_bytes / 1e6:.2f} MB. The calls, one after the other on the same warm machine:")
    for k in range(1, n):
        print(f"  carry [\".gpu/part{k}\"]: bash scripts/device_stage1.sh .gpu/part{k}")
    names = " ".join([kit["recipe"], *(str(v) for v in variants)])
    env = "" if train == "sft" else f"TRAIN={train} "
    print(f"  carry [\".gpu/part{n}\"], timeout_s 600: {env}bash scripts/device_train.sh {names}")
    return kit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("training/configs/tiny-en-gpu.toml"))
    parser.add_argument("--variant", type=Path, action="append", default=[],
                        help="a recipe trained beside --config on its clips (same [data]; repeatable)")
    parser.add_argument("--train", choices=("sft", "rl"), default="sft",
                        help="the stage device_train.sh trains (its TRAIN): rl runs DG-WGPO from each [rl].init")
    args = parser.parse_args(argv)
    kit = build(args.config, tuple(args.variant), args.train)
    print(f"kit for {kit['recipe']}: {sum(kit['clean_speech']['utterances'].values())} clean utterances, "
          f"{len(kit['wheels'])} wheels, {len(kit['data'])} data files, model {kit['model_archive_bytes'] / 1e6:.1f} MB, "
          f"clean speech {kit['clean_tar_bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
