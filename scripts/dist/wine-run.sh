#!/usr/bin/env bash
# Runs a Windows x86_64 console program under the Wine 8 that
# scripts/dist/toolchain.sh unpacked (not installed): the artifact tests run
# the Windows build of ipcbus this way.
# Usage: bash scripts/dist/wine-run.sh path/to/prog.exe [args]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ROOT=${ROOT:-$here/../../target/cross-toolchain}
W=$ROOT/wine
[ -x "$W/usr/lib/wine/wine64" ] || { echo "no Wine in $W: run bash scripts/dist/toolchain.sh" >&2; exit 1; }
STUB=$ROOT/winestub
if [ ! -f "$STUB/bcryptprimitives.dll" ]; then
  # Rust 1.78+ std imports ProcessPrng from bcryptprimitives.dll, which Wine
  # 8.0 lacks (Windows 10 and later have it): a stub on top of RtlGenRandom.
  mkdir -p "$STUB"
  cat > "$STUB/bcryptprimitives.c" <<'EOC'
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return RtlGenRandom(data, (ULONG)len); }
EOC
  x86_64-w64-mingw32-gcc -O2 -shared -o "$STUB/bcryptprimitives.dll" "$STUB/bcryptprimitives.c" -ladvapi32
fi
exe=$(readlink -f "$1"); shift
# Wine finds a native DLL next to the .exe.
[ -f "$(dirname "$exe")/bcryptprimitives.dll" ] || cp "$STUB/bcryptprimitives.dll" "$(dirname "$exe")/"
export WINEPREFIX=${WINEPREFIX:-$ROOT/wineprefix} WINEDEBUG=${WINEDEBUG:--all}
# Wine's own user32.dll loads zlib1.dll (package libz-mingw-w64), which it
# looks for on the Windows PATH.
export WINEPATH="Z:${W//\//\\}\\usr\\x86_64-w64-mingw32\\lib"
export WINEDLLPATH=$W/usr/x86_64-w64-mingw32/lib LD_LIBRARY_PATH=$W/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
exec "$W/usr/lib/wine/wine64" "$exe" "$@"
