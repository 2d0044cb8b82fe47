#!/bin/sh
# Times a full `switchboard check` run against three echo servers on loopback:
# switchboard's own /ws/echo (limit raised to 16 MiB, as the limits cases need),
# Node's `ws` and Python's `websockets`, both from their registries (npm, pip).
# Not a test: it prints each server's summary line and wall time, for BENCHMARKS.md.
#
#   cargo build --release && sh benches/check-servers.sh
set -eu
bin=${SWITCHBOARD:-target/release/switchboard}
work=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT INT TERM

wait_port() {
    i=0
    until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 1)" 2>/dev/null; do
        i=$((i + 1)); [ "$i" -lt 100 ] || { echo "port $1 never opened" >&2; exit 1; }
        sleep 0.1
    done
}

run() { # NAME URL
    start=$(date +%s.%N)
    summary=$("$bin" check "$2" | tail -n 1) || true
    end=$(date +%s.%N)
    printf '%-22s %6.1f s  %s\n' "$1" "$(echo "$end - $start" | bc)" "$summary"
}

"$bin" --listen 127.0.0.1:39301 --no-tls --no-persist --no-qr --max-message-size 16777216 >/dev/null 2>&1 &
pids="$pids $!"
wait_port 39301
run "switchboard /ws/echo" ws://127.0.0.1:39301/ws/echo

(cd "$work" && npm install --silent --no-audit --no-fund ws >/dev/null 2>&1)
cat > "$work/echo.js" <<'JS'
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 39302, maxPayload: 16 << 20 });
wss.on('connection', (ws) => {
  ws.on('error', () => {}); // a peer's protocol error: ws closes that connection itself
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
JS
(cd "$work" && node echo.js) &
pids="$pids $!"
wait_port 39302
run "node ws $(cd "$work" && node -p "require('ws/package.json').version")" ws://127.0.0.1:39302/

python3 -c 'import websockets.asyncio.server' 2>/dev/null ||
    python3 -m pip install --quiet --user 'websockets>=13' 2>/dev/null ||
    python3 -m pip install --quiet --user --break-system-packages 'websockets>=13'
cat > "$work/echo.py" <<'PY'
import asyncio
from websockets.asyncio.server import serve

async def echo(ws):
    async for message in ws:
        await ws.send(message)

async def main():
    async with serve(echo, "127.0.0.1", 39303, max_size=None) as server:
        await server.serve_forever()

asyncio.run(main())
PY
python3 "$work/echo.py" &
pids="$pids $!"
wait_port 39303
run "python websockets $(python3 -c 'import websockets; print(websockets.__version__)')" ws://127.0.0.1:39303/
