#!/usr/bin/env python3
"""Build Sift's installers and smoke-test the frozen app: `python3 packaging/build.py`.

From a fresh clone, with Python 3.11+ and nothing else set up, this:
  1. creates `.venv-build` (its own, so the frozen app holds only Sift's runtime dependencies) and
     installs Sift with the `packaging` extra at the exact versions in constraints.txt;
     on x86 it prepares the int8 model the automatic backend runs (`sift models prepare --into`);
  2. freezes the app with PyInstaller (packaging/sift.spec) into dist/Sift/, one folder holding the
     `sift-desktop` window program, the `sift` command line, the bundled model and the samples;
  3. packs it for this platform: on Linux dist/Sift-VERSION-linux-x86_64.tar.gz (with install.sh,
     the .desktop file and the icon) and dist/sift_VERSION_amd64.deb; on Windows the Inno Setup
     installer (packaging/windows/sift.iss, needs ISCC.exe); on macOS Sift.app and a DMG
     (packaging/macos/make_dmg.sh);
  4. smoke-tests the frozen app: `sift self-test` and `sift-desktop --self-test` index sample files
     with the bundled model in a temporary home and check a known search hit, in a clean environment
     (no venv, a temporary HOME) with the network cut off (`unshare -rn` on Linux where it works);
     on Linux it also installs the tarball into a temporary HOME and runs the installed `sift`, and
     unpacks the .deb and runs the `sift` in it.
Then it prints the sizes. Exit status 0 only when everything built and every smoke test passed.

Options: --skip-build (pack and test dist/Sift as it is), --no-smoke, --gpu (keep CUDA libraries:
install a CUDA torch into .venv-build first, see README), --screenshot PNG (Linux: start the frozen
window under Xvfb with a search and save a screenshot; needs xvfb-run and ImageMagick).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
sys.path.insert(0, str(PACKAGING))
from version import app_version  # noqa: E402 (found through the path set just above)

VENV = ROOT / ".venv-build"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / ("python.exe" if os.name == "nt" else "python")
STAMP = VENV / ".sift-build-installed"
DIST = ROOT / "dist"
WORK = ROOT / "build" / "pyinstaller"
LOG = ROOT / "build" / "pyinstaller.log"
BUNDLE = DIST / "Sift"
EXE_SUFFIX = ".exe" if os.name == "nt" else ""
BUILD_TIMEOUT_S = 1800       # PyInstaller over torch takes minutes; a hang must not take hours
SELF_TEST_TIMEOUT_S = 600    # first start of a frozen torch app on a slow disk, plus indexing
SCREENSHOT_QUERY = "remove limescale from the coffee machine"
# Libraries the frozen Qt (xcb) and torch need from the system; everything else is in the bundle.
DEB_DEPENDS = ("libc6 (>= 2.28), libgl1, libegl1, libfontconfig1, libfreetype6, libxkbcommon0, libxkbcommon-x11-0, "
               "libx11-xcb1, libxcb-cursor0, libxcb-icccm4, libxcb-image0, libxcb-keysyms1, libxcb-randr0, "
               "libxcb-render-util0, libxcb-shape0, libxcb-xinerama0, libxcb-xkb1, libdbus-1-3, libglib2.0-0")


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


# -- 1. the build environment -------------------------------------------------------------------------------


def _inputs_digest() -> str:
    h = hashlib.sha256()
    for name in ("pyproject.toml", "constraints.txt"):
        h.update((ROOT / name).read_bytes())
    return h.hexdigest()


def setup_venv() -> None:
    """`.venv-build` with Sift and the packaging extra, reinstalled when pyproject or constraints change."""
    if not PYTHON.exists():
        step(f"creating {VENV.name}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = _inputs_digest()
    if STAMP.exists() and STAMP.read_text() == digest:
        return
    step("installing Sift and PyInstaller into the build environment (a few minutes the first time)")
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    # Not editable: the spec puts this checkout first on PyInstaller's path, and the installed
    # copy only brings in the dependencies with their metadata.
    subprocess.run([*pip, "install", "-c", "constraints.txt", ".[packaging]"], cwd=ROOT, check=True)
    STAMP.write_text(digest)


def prepare_int8() -> None:
    """On x86: the bundled model quantized to int8 and checked against torch, into the build
    environment's share/sift/openvino, which the spec bundles (the automatic backend's model)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return
    step("preparing the int8 model for OpenVINO (about half a minute)")
    prepared = VENV / "share" / "sift" / "openvino"
    done = subprocess.run([str(PYTHON), "-m", "engine.cli", "models", "prepare", "bundled:all-MiniLM-L6-v2",
                           "--into", str(prepared)], cwd=ROOT, check=False)
    if done.returncode != 0:
        sys.exit("the int8 model could not be prepared (above); an x86 installer without it would run torch")


# -- 2. freeze ------------------------------------------------------------------------------------------------


def freeze(*, gpu: bool) -> float:
    step(f"freezing with PyInstaller (log: {LOG.relative_to(ROOT)}; several minutes)")
    LOG.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SIFT_GPU": "1" if gpu else "0"}
    t0 = time.perf_counter()
    with LOG.open("w") as log:
        try:
            rc = subprocess.run([str(PYTHON), "-m", "PyInstaller", "--noconfirm", "--distpath", str(DIST),
                                 "--workpath", str(WORK), str(PACKAGING / "sift.spec")],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                timeout=BUILD_TIMEOUT_S, check=False).returncode
        except subprocess.TimeoutExpired:
            rc = -1
    elapsed = time.perf_counter() - t0
    if rc != 0:
        tail = LOG.read_text(errors="replace").splitlines()[-30:]
        sys.exit("PyInstaller failed" + (" (timed out)" if rc == -1 else f" (exit {rc})") + f"; the end of {LOG}:\n"
                 + "\n".join(tail))
    print(f"froze dist/Sift in {elapsed / 60:.1f} min", flush=True)
    return elapsed


# -- 3. pack --------------------------------------------------------------------------------------------------


def linux_arch() -> tuple[str, str]:
    machine = platform.machine().lower()
    return {"x86_64": ("x86_64", "amd64"), "amd64": ("x86_64", "amd64"),
            "aarch64": ("aarch64", "arm64"), "arm64": ("aarch64", "arm64")}.get(machine, (machine, machine))


def make_tarball(version: str) -> Path:
    """Sift-VERSION-linux-ARCH.tar.gz: the app folder, install.sh, the .desktop file and the icons."""
    arch, _ = linux_arch()
    name = f"Sift-{version}-linux-{arch}"
    out = DIST / f"{name}.tar.gz"
    step(f"packing {out.relative_to(ROOT)}")
    extras = {
        "install.sh": PACKAGING / "linux" / "install.sh",
        "sift.desktop": ROOT / "resources" / "sift.desktop",
        "sift.png": ROOT / "resources" / "icons" / "sift.png",
        "sift.svg": ROOT / "resources" / "icons" / "sift.svg",
        "README.txt": PACKAGING / "linux" / "README.txt",
    }

    def executable(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    with tarfile.open(out, "w:gz", compresslevel=6) as tar:
        tar.add(BUNDLE, arcname=f"{name}/Sift", filter=executable)
        for arcname, source in extras.items():
            tar.add(source, arcname=f"{name}/{arcname}", filter=executable)
    return out


def make_deb(version: str) -> Path:
    """A .deb installing to /opt/sift with /usr/bin links, the menu entry and icons; built by dpkg-deb."""
    if shutil.which("dpkg-deb") is None:
        raise FileNotFoundError("dpkg-deb is not installed (apt-get install dpkg)")
    _, deb_arch = linux_arch()
    out = DIST / f"sift_{version}_{deb_arch}.deb"
    step(f"packing {out.relative_to(ROOT)}")
    with tempfile.TemporaryDirectory(prefix="sift-deb-") as tmp:
        root = Path(tmp) / "root"
        shutil.copytree(BUNDLE, root / "opt" / "sift", symlinks=True)
        bindir = root / "usr" / "bin"
        bindir.mkdir(parents=True)
        for program in ("sift", "sift-desktop"):
            (bindir / program).symlink_to(f"/opt/sift/{program}")
        apps = root / "usr" / "share" / "applications"
        apps.mkdir(parents=True)
        shutil.copy2(ROOT / "resources" / "sift.desktop", apps / "sift.desktop")
        for size_dir, icon in (("256x256", "sift.png"), ("scalable", "sift.svg")):
            target = root / "usr" / "share" / "icons" / "hicolor" / size_dir / "apps"
            target.mkdir(parents=True)
            shutil.copy2(ROOT / "resources" / "icons" / icon, target / icon)
        control = root / "DEBIAN"
        control.mkdir()
        installed_kb = tree_size(root) // 1024
        template = (PACKAGING / "linux" / "deb-control").read_text()
        (control / "control").write_text(template.format(version=version, arch=deb_arch, installed_kb=installed_kb,
                                                         depends=DEB_DEPENDS))
        for script in ("postinst", "postrm"):
            shutil.copy2(PACKAGING / "linux" / f"deb-{script}", control / script)
            (control / script).chmod(0o755)
        for path in root.rglob("*"):  # dpkg-deb refuses group/world-writable control files; keep it tidy
            if not path.is_symlink():
                path.chmod(path.stat().st_mode & ~0o022)
        # gzip: every dpkg reads it (zstd needs dpkg 1.21.18+), and it packs ~1 GB in a minute on 2 cores.
        subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(out)], check=True,
                       stdout=subprocess.DEVNULL)
    return out


def make_windows_installer(version: str) -> Path | None:
    iscc = shutil.which("iscc") or shutil.which("ISCC") or next(
        (str(p) for p in Path(os.environ.get("ProgramFiles(x86)", "C:/Program Files (x86)")).glob("Inno Setup*/ISCC.exe")),
        None)
    if iscc is None:
        print("Inno Setup's ISCC.exe not found: install Inno Setup 6, then rerun (dist/Sift is built).")
        return None
    step("building the Windows installer with Inno Setup")
    # The installer's own icon must be an .ico; Pillow (in the build environment) makes one from the PNG.
    make_ico = ("import sys; from PIL import Image; Image.open(sys.argv[1]).save(sys.argv[2], "
                "sizes=[(16, 16), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)])")
    subprocess.run([str(PYTHON), "-c", make_ico, str(ROOT / "resources" / "icons" / "sift.png"),
                    str(ROOT / "build" / "sift.ico")], check=True)
    subprocess.run([iscc, f"/DAppVersion={version}", f"/DSourceDir={BUNDLE}", f"/DRootDir={ROOT}",
                    f"/O{DIST}", str(PACKAGING / "windows" / "sift.iss")], check=True)
    return DIST / f"Sift-{version}-windows-x64-setup.exe"


def make_dmg(version: str) -> Path:
    step("building the macOS disk image")
    subprocess.run(["bash", str(PACKAGING / "macos" / "make_dmg.sh"), version], cwd=ROOT, check=True)
    return DIST / f"Sift-{version}-macos-{platform.machine()}.dmg"


# -- 4. smoke test --------------------------------------------------------------------------------------------


def offline_prefix() -> tuple[list[str], str]:
    """A command prefix that cuts the network off, and how: `unshare -rn` (a new, empty network namespace)."""
    if sys.platform.startswith("linux") and shutil.which("unshare"):
        probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, check=False)
        if probe.returncode == 0:
            return ["unshare", "-rn"], "no network (unshare -rn: a network namespace with only a loopback, down)"
    return [], "network NOT cut off (unshare -rn unavailable here); no proxy variables, HF offline by the runtime hook"


def clean_env(home: Path) -> dict[str, str]:
    """What a fresh desktop session would give the app: no venv, no Python variables, a new HOME."""
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "SIFT_HOME": str(home / "sift-home")}
    if os.name == "nt":
        keep = ("SYSTEMROOT", "WINDIR", "TEMP", "TMP")
        env = {**{k: v for k, v in os.environ.items() if k.upper() in keep}, "USERPROFILE": str(home),
               "SIFT_HOME": str(home / "sift-home"), "PATH": os.environ.get("SYSTEMROOT", "")}
    return env


def run_self_test(label: str, command: list[str], *, home: Path) -> bool:
    prefix, how = offline_prefix()
    env = clean_env(home)
    print(f"\n-- {label}: {' '.join(command)}\n   {how}; env -i HOME={home} PATH={env.get('PATH')}", flush=True)
    t0 = time.perf_counter()
    try:
        result = subprocess.run([*prefix, *command], env=env, cwd=home, timeout=SELF_TEST_TIMEOUT_S,
                                capture_output=True, text=True, check=False)
    except subprocess.TimeoutExpired:
        print(f"   FAILED: no answer in {SELF_TEST_TIMEOUT_S} s")
        return False
    for line in (result.stdout + result.stderr).splitlines():
        print(f"   {line}")
    ok = result.returncode == 0
    print(f"   {'passed' if ok else f'FAILED (exit {result.returncode})'} in {time.perf_counter() - t0:.1f} s", flush=True)
    return ok


def smoke_test(artifacts: dict[str, Path]) -> bool:
    step("smoke test of the frozen app")
    results = []
    with tempfile.TemporaryDirectory(prefix="sift-smoke-") as tmp:
        tmp = Path(tmp)
        for label, program, args in (("sift self-test", "sift", ["self-test"]),
                                     ("sift-desktop --self-test", "sift-desktop", ["--self-test"])):
            home = tmp / program
            home.mkdir()
            results.append(run_self_test(label, [str(BUNDLE / f"{program}{EXE_SUFFIX}"), *args], home=home))
        if "tarball" in artifacts:
            home = tmp / "tarball-home"
            (home / "unpacked").mkdir(parents=True)
            with tarfile.open(artifacts["tarball"]) as tar:
                tar.extractall(home / "unpacked", filter="tar")
            folder = next((home / "unpacked").iterdir())
            installed = subprocess.run(["sh", str(folder / "install.sh")], env=clean_env(home), capture_output=True,
                                       text=True, check=False)
            print("\n-- install.sh into a temporary HOME:\n   " + (installed.stdout + installed.stderr).strip()
                  .replace("\n", "\n   "))
            desktop_file = home / ".local" / "share" / "applications" / "sift.desktop"
            ok = installed.returncode == 0 and desktop_file.is_file() and "Exec=" + str(home) in desktop_file.read_text()
            results.append(ok and run_self_test("installed ~/.local/bin/sift self-test",
                                                [str(home / ".local" / "bin" / "sift"), "self-test"], home=home))
        if "deb" in artifacts:
            home = tmp / "deb-home"
            home.mkdir()
            subprocess.run(["dpkg-deb", "-x", str(artifacts["deb"]), str(home / "root")], check=True)
            results.append(run_self_test(".deb payload /opt/sift/sift self-test",
                                         [str(home / "root" / "opt" / "sift" / "sift"), "self-test"], home=home))
    return bool(results) and all(results)


def screenshot(png: Path, *, wait_s: float) -> None:
    """Start the frozen window under Xvfb with a search, wait for model and index, and grab the screen."""
    step(f"screenshot of the frozen window under Xvfb -> {png}")
    for tool in ("xvfb-run", "import", "convert"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: apt-get install -y xvfb imagemagick")
    with tempfile.TemporaryDirectory(prefix="sift-shot-") as tmp:
        raw = Path(tmp) / "screen.png"
        inner = (f'"{BUNDLE / "sift-desktop"}" --home "{tmp}/home" --search "{SCREENSHOT_QUERY}" & app=$!; '
                 f'sleep {wait_s:.0f}; import -window root "{raw}"; kill $app; wait $app')
        env = {**clean_env(Path(tmp)), "QT_QPA_PLATFORM": "xcb"}
        prefix, _ = offline_prefix()
        subprocess.run([*prefix, "xvfb-run", "-a", "-s", "-screen 0 1400x900x24", "sh", "-c", inner], env=env,
                       timeout=wait_s + 120, check=False)
        if not raw.exists():
            sys.exit("no screenshot was taken")
        png.parent.mkdir(parents=True, exist_ok=True)
        # Crop the empty screen around the window and keep the PNG small for the repository.
        subprocess.run(["convert", str(raw), "-trim", "+repage", "-colors", "256", "-strip", str(png)], check=True)
    print(f"saved {png} ({human(png.stat().st_size)})")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-build", action="store_true", help="pack and test the existing dist/Sift")
    parser.add_argument("--no-smoke", action="store_true", help="do not run the smoke tests")
    parser.add_argument("--gpu", action="store_true", help="keep CUDA libraries (install a CUDA torch first)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG", help="Linux: screenshot the frozen window")
    parser.add_argument("--screenshot-wait", type=float, default=60.0, metavar="S",
                        help="seconds to let the window load the model and index before the screenshot")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 11):  # noqa: UP036  (run by whatever python3 a fresh machine has)
        sys.exit(f"Building Sift needs Python 3.11 or newer; this is {sys.version.split()[0]}.")
    version = app_version()
    started = time.perf_counter()
    freeze_s = None
    if not args.skip_build:
        setup_venv()
        prepare_int8()
        freeze_s = freeze(gpu=args.gpu)
    if not (BUNDLE / f"sift{EXE_SUFFIX}").exists():
        sys.exit(f"{BUNDLE} has no frozen app: run without --skip-build")
    artifacts: dict[str, Path] = {}
    if sys.platform.startswith("linux"):
        artifacts["tarball"] = make_tarball(version)
        try:
            artifacts["deb"] = make_deb(version)
        except (FileNotFoundError, subprocess.CalledProcessError) as exc:
            print(f"no .deb: {exc}")
    elif sys.platform == "win32":
        if (installer := make_windows_installer(version)) is not None:
            artifacts["installer"] = installer
    elif sys.platform == "darwin":
        artifacts["dmg"] = make_dmg(version)
    ok = True
    if not args.no_smoke:
        ok = smoke_test(artifacts)
    if args.screenshot:
        screenshot(args.screenshot, wait_s=args.screenshot_wait)
    step("results")
    print(f"app folder  {BUNDLE.relative_to(ROOT)}/  {human(tree_size(BUNDLE))}")
    for label, path in artifacts.items():
        print(f"{label:<11} {path.relative_to(ROOT)}  {human(path.stat().st_size)}")
    if freeze_s is not None:
        print(f"PyInstaller {freeze_s / 60:.1f} min; everything {(time.perf_counter() - started) / 60:.1f} min")
    if not args.no_smoke:
        print("smoke test: " + ("PASSED" if ok else "FAILED (see the lines marked FAIL above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
