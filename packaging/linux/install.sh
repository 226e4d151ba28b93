#!/bin/sh
# Install Sift for this user (no root needed), from the folder this script is in:
#   sh install.sh              install or update: ~/.local/lib/sift, ~/.local/bin/{sift,sift-desktop},
#                              the menu entry and the icon
#   sh install.sh --uninstall  remove them again (your index and settings stay; the message says where)
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
DATA_HOME=${XDG_DATA_HOME:-$HOME/.local/share}
APP_DIR=$HOME/.local/lib/sift
BIN_DIR=$HOME/.local/bin
DESKTOP_FILE=$DATA_HOME/applications/sift.desktop
ICON_PNG=$DATA_HOME/icons/hicolor/256x256/apps/sift.png
ICON_SVG=$DATA_HOME/icons/hicolor/scalable/apps/sift.svg

refresh_menus() {
    # Desktops pick up new entries on their own; these only make it immediate where they exist.
    command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$DATA_HOME/applications" || true
    command -v gtk-update-icon-cache >/dev/null 2>&1 && gtk-update-icon-cache -q -t "$DATA_HOME/icons/hicolor" || true
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -rf "$APP_DIR"
    for program in sift sift-desktop; do
        # Only our own links: never a different program of the same name.
        if [ -L "$BIN_DIR/$program" ] && [ "$(readlink "$BIN_DIR/$program")" = "$APP_DIR/$program" ]; then
            rm -f "$BIN_DIR/$program"
        fi
    done
    rm -f "$DESKTOP_FILE" "$ICON_PNG" "$ICON_SVG"
    refresh_menus
    echo "Sift is uninstalled. Your index and settings are still in ~/.local/share/Sift, ~/.config/Sift"
    echo "and ~/.cache/Sift (or in \$SIFT_HOME); delete those folders to remove them too."
    exit 0
fi

if [ ! -x "$HERE/Sift/sift-desktop" ]; then
    echo "install.sh: $HERE/Sift/sift-desktop is missing; unpack the whole Sift tarball and run install.sh from it." >&2
    exit 1
fi

mkdir -p "$HOME/.local/lib" "$BIN_DIR" "$DATA_HOME/applications" "$(dirname "$ICON_PNG")" "$(dirname "$ICON_SVG")"
# Copy beside the old version, then swap, so a failed copy never leaves a half-installed Sift.
rm -rf "$APP_DIR.new"
cp -R "$HERE/Sift" "$APP_DIR.new"
rm -rf "$APP_DIR.old"
[ -d "$APP_DIR" ] && mv "$APP_DIR" "$APP_DIR.old"
mv "$APP_DIR.new" "$APP_DIR"
rm -rf "$APP_DIR.old"

for program in sift sift-desktop; do
    ln -sfn "$APP_DIR/$program" "$BIN_DIR/$program"
done
cp "$HERE/sift.png" "$ICON_PNG"
cp "$HERE/sift.svg" "$ICON_SVG"
# The menu entry runs the installed program by its full path: ~/.local/bin is not on every session's PATH.
sed -e "s|^Exec=sift-desktop|Exec=$APP_DIR/sift-desktop|" "$HERE/sift.desktop" > "$DESKTOP_FILE"
chmod 644 "$DESKTOP_FILE"
refresh_menus

echo "Sift is installed in $APP_DIR."
echo "Start it from your applications menu (Sift), or run sift-desktop; the command line is sift."
case ":$PATH:" in
    *":$BIN_DIR:"*) ;;
    *) echo "Note: $BIN_DIR is not on your PATH; add it to run sift and sift-desktop by name." ;;
esac
echo "To remove it: sh $HERE/install.sh --uninstall"
