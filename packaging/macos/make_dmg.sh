#!/bin/bash
# Wrap dist/Sift.app (made by PyInstaller from packaging/sift.spec on a Mac) in a disk image:
#   bash packaging/macos/make_dmg.sh VERSION      (packaging/build.py runs it after freezing)
# Result: dist/Sift-VERSION-macos-ARCH.dmg, with Sift.app and a link to /Applications to drag it to.
#
# Signing and notarization (needed for Gatekeeper to open it without a right-click → Open) run
# when these are set; without them the image is built unsigned, fine for testing:
#   SIFT_CODESIGN_IDENTITY="Developer ID Application: NAME (TEAMID)"
#   SIFT_NOTARY_PROFILE=name-of-a-keychain-profile   (xcrun notarytool store-credentials NAME …)
set -euo pipefail

VERSION=${1:?usage: make_dmg.sh VERSION}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
APP="$ROOT/dist/Sift.app"
ARCH=$(uname -m)
DMG="$ROOT/dist/Sift-$VERSION-macos-$ARCH.dmg"
ENTITLEMENTS="$ROOT/packaging/macos/entitlements.plist"

if [ ! -d "$APP" ]; then
    echo "make_dmg.sh: $APP is missing; freeze the app first (python3 packaging/build.py)." >&2
    exit 1
fi

if [ -n "${SIFT_CODESIGN_IDENTITY:-}" ]; then
    # Inside out: every library first, then the programs, then the bundle (--deep is not enough for
    # notarization). The hardened runtime needs the entitlements for torch's JIT and Python's ctypes.
    find "$APP/Contents" -type f \( -name "*.dylib" -o -name "*.so" \) -print0 |
        xargs -0 codesign --force --timestamp --options runtime --sign "$SIFT_CODESIGN_IDENTITY"
    for program in sift sift-desktop; do
        codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
            --sign "$SIFT_CODESIGN_IDENTITY" "$APP/Contents/MacOS/$program"
    done
    codesign --force --timestamp --options runtime --entitlements "$ENTITLEMENTS" \
        --sign "$SIFT_CODESIGN_IDENTITY" "$APP"
    codesign --verify --strict --verbose=2 "$APP"
fi

STAGING=$(mktemp -d)
trap 'rm -rf "$STAGING"' EXIT
cp -R "$APP" "$STAGING/Sift.app"
ln -s /Applications "$STAGING/Applications"
rm -f "$DMG"
# UDZO: zlib-compressed, read-only, opens on every supported macOS.
hdiutil create -volname "Sift $VERSION" -srcfolder "$STAGING" -ov -format UDZO "$DMG"

if [ -n "${SIFT_CODESIGN_IDENTITY:-}" ]; then
    codesign --force --timestamp --sign "$SIFT_CODESIGN_IDENTITY" "$DMG"
    if [ -n "${SIFT_NOTARY_PROFILE:-}" ]; then
        xcrun notarytool submit "$DMG" --keychain-profile "$SIFT_NOTARY_PROFILE" --wait
        xcrun stapler staple "$DMG"
    fi
fi
echo "Built $DMG ($(du -h "$DMG" | cut -f1))"
