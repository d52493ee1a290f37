#!/usr/bin/env bash
# End-to-end test of the compose cluster (deploy/docker-compose.yml), with
# real containers: it builds the images, starts the stack on free host ports,
# loads TPC-H into the S3 store and checks query answers against the same
# queries run embedded on the same data, through the host's `ember` and the
# CLI container. It kills an executor during a running query, scales the
# executors up and down, writes partitioned Parquet to the store and reads
# it back. Then it restarts the stack secured (deploy/docker-compose.secure.yml:
# a token and TLS from Docker secrets), checks answers and refusals. The
# stack is torn down at the end, also on failure.
#
# Usage: deploy/test-compose.sh [--debug] [--skip-build] [--keep]
#
#   --debug        images from dev-profile binaries (what CI uses)
#   --skip-build   use the binaries already built
#   --keep         leave the stack running at the end (to look around)
#
# Environment: EMBER_TPCH_SF (default 0.1), CARGO_TARGET_DIR.
# Without a Docker engine it prints why and exits 0 (skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
keep=false
image_args=()
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug; image_args+=(--debug) ;;
        --skip-build) image_args+=(--skip-build) ;;
        --keep) keep=true ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test-compose: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

say() { echo "test-compose: $*"; }
fail() { echo "test-compose: FAILED: $*" >&2; exit 1; }
# same_answer EXPECTED ACTUAL WHAT: fails, showing the first differences,
# unless the two files are byte for byte equal.
same_answer() {
    cmp -s "$1" "$2" || { diff "$1" "$2" | sed -n 1,20p >&2; fail "$3"; }
}

if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    say "skipped: no Docker engine answers on this machine"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    compose_cmd=(docker compose)
elif command -v docker-compose >/dev/null 2>&1; then
    compose_cmd=(docker-compose)
else
    say "skipped: neither 'docker compose' nor 'docker-compose' is installed"
    exit 0
fi

started=$(date +%s)
sf="${EMBER_TPCH_SF:-0.1}"
target_dir="${CARGO_TARGET_DIR:-target}"
ember="$target_dir/$profile/ember"
work="$(mktemp -d /tmp/ember-compose-test.XXXXXX)"
project="ember-test-$$"

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
export EMBER_COMPOSE_SCHEDULER_PORT="$(free_port)"
export EMBER_COMPOSE_S3_PORT="$(free_port)"
export EMBER_EXECUTORS=2
# Executors silent for 20 s are declared lost (the scheduler sweeps every 15 s).
export EMBER_EXECUTOR_TIMEOUT_SECS=20
scheduler="127.0.0.1:$EMBER_COMPOSE_SCHEDULER_PORT"

compose() { "${compose_cmd[@]}" -p "$project" -f deploy/docker-compose.yml "$@"; }

# Executors' anonymous work-dir volumes outlive a scale-down; remember them
# so that the teardown removes them too.
remember_volumes() {
    local id
    for id in $(compose ps -q executor 2>/dev/null); do
        docker inspect -f '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}' "$id" \
            >> "$work/volumes.txt" 2>/dev/null || true
    done
}

cleanup() {
    local status=$?
    if [ "$status" != 0 ]; then
        say "logs of the failed run:"
        compose logs --no-color --tail=60 2>&1 | sed 's/^/  | /' >&2 || true
    fi
    if $keep; then
        say "stack left running: ${compose_cmd[*]} -p $project -f deploy/docker-compose.yml down -v"
    else
        remember_volumes
        compose --profile cli down -v --remove-orphans >/dev/null 2>&1 || true
        # shellcheck disable=SC2046
        docker volume rm $(tr ' ' '\n' < "$work/volumes.txt" 2>/dev/null | sort -u) >/dev/null 2>&1 || true
        say "stack removed"
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "building images ($profile)"
deploy/docker/build-images.sh "${image_args[@]}"
[ -x "$ember" ] || fail "$ember is missing"

say "starting the stack (project $project, scheduler on $scheduler)"
compose up -d >/dev/null 2>&1 || { compose up -d; fail "docker compose up"; }

# Host-side client settings: the store as the host sees it.
export AWS_ENDPOINT_URL="http://127.0.0.1:$EMBER_COMPOSE_S3_PORT"
export AWS_ALLOW_HTTP=true AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=ember-dev-key AWS_SECRET_ACCESS_KEY=ember-dev-secret
export EMBER_LOG=ember=warn

# How curl reaches the scheduler's REST API (the secured phase adds TLS and
# the token).
rest_scheme=http
rest_args=()
# The number of executors the scheduler lists.
executor_count() {
    curl -fsS "${rest_args[@]}" "$rest_scheme://$scheduler/api/executors" 2>/dev/null \
        | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo 0
}
wait_for_executors() {
    local want="$1" deadline=$(( $(date +%s) + ${2:-120} ))
    while [ "$(executor_count)" != "$want" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || fail "the scheduler lists $(executor_count) executors, not $want"
        sleep 1
    done
}
wait_for_executors 2
say "scheduler up with 2 executors"

say "generating TPC-H SF $sf and loading it into the S3 store"
"$ember" datagen tpch --scale-factor "$sf" --parts 4 --output "$work/tpch" >/dev/null
tables="region nation supplier customer part partsupp orders lineitem"
{
    for t in $tables; do
        echo "CREATE EXTERNAL TABLE local_$t STORED AS PARQUET LOCATION '$work/tpch/$t/';"
        echo "COPY local_$t TO 's3://ember/tpch/$t/' STORED AS PARQUET;"
    done
} > "$work/load.sql"
"$ember" sql --format csv -f "$work/load.sql" >/dev/null

# Table definitions: one script over local files (the reference), one over
# the store (what the cluster reads).
for t in $tables; do
    echo "CREATE EXTERNAL TABLE $t STORED AS PARQUET LOCATION '$work/tpch/$t/';" >> "$work/local-tables.sql"
    echo "CREATE EXTERNAL TABLE $t STORED AS PARQUET LOCATION 's3://ember/tpch/$t/';" >> "$work/s3-tables.sql"
done

# run_query N SCRIPT [ember args...]: prints query N's answer as CSV.
run_query() {
    local n="$1" tables_sql="$2"; shift 2
    cat "$tables_sql" "client/src/tpch/queries/q$n.sql" > "$work/q$n-run.sql"
    "$ember" sql --format csv "$@" -f "$work/q$n-run.sql"
}

say "reference answers: the 22 queries embedded over local files"
mkdir -p "$work/expected" "$work/actual"
for n in $(seq 1 22); do
    run_query "$n" "$work/local-tables.sql" > "$work/expected/q$n.csv"
    [ -s "$work/expected/q$n.csv" ] || fail "q$n: the embedded reference printed nothing"
done

say "the 22 queries on the compose cluster, from the host"
for n in $(seq 1 22); do
    run_query "$n" "$work/s3-tables.sql" --scheduler "$scheduler" > "$work/actual/q$n.csv" \
        || fail "q$n failed on the cluster"
    same_answer "$work/expected/q$n.csv" "$work/actual/q$n.csv" "q$n: cluster answer differs from embedded"
done
say "22 of 22 answers equal"

say "WebAssembly functions loaded into the running cluster"
# The word-count example's library, built here and sent by the client: the
# images were never rebuilt for it. The reference is Ember's built-in
# functions of the same rules, embedded over local files.
wasm_rustc="$(scripts/install-wasm-guest-toolchain)" || fail "no Rust compiler for wasm32"
"$wasm_rustc" --edition=2021 -O --target wasm32-unknown-unknown --crate-type=rlib \
    --crate-name=ember_udf wasm/guest/src/lib.rs -o "$work/libember_udf.rlib"
"$wasm_rustc" --edition=2021 -O --target wasm32-unknown-unknown --crate-type=cdylib \
    --extern ember_udf="$work/libember_udf.rlib" wasm/guest/examples/word_count.rs \
    -o "$work/word_count.wasm"
words_query() {
    echo "CREATE FUNCTION LIBRARY word_count LANGUAGE wasm AS '$work/word_count.wasm';"
    echo "SELECT word, $2(CAST(1 AS BIGINT)) AS n FROM (SELECT unnest($1(l_comment)) AS word"
    echo "  FROM lineitem) GROUP BY word ORDER BY n DESC, word LIMIT 25;"
}
{ cat "$work/local-tables.sql"; words_query words plus; } > "$work/words-native.sql"
{ cat "$work/s3-tables.sql"; words_query split_words sum_counts; } > "$work/words-wasm.sql"
"$ember" sql --format csv -f "$work/words-native.sql" > "$work/expected/words.csv"
"$ember" sql --format csv --scheduler "$scheduler" -f "$work/words-wasm.sql" \
    > "$work/actual/words.csv" || fail "the WebAssembly functions failed on the cluster"
same_answer "$work/expected/words.csv" "$work/actual/words.csv" \
    "WebAssembly word counts on the cluster differ from the built-in functions' embedded"
say "WebAssembly functions: same answer as the built-in ones"

say "queries through the CLI container"
for n in 1 6 13; do
    cat "$work/s3-tables.sql" "client/src/tpch/queries/q$n.sql" \
        | compose run --rm -T ember sql --format csv \
        > "$work/actual/cli-q$n.csv" 2> "$work/cli-q$n.err" \
        || { cat "$work/cli-q$n.err" >&2; fail "q$n failed in the CLI container"; }
    same_answer "$work/expected/q$n.csv" "$work/actual/cli-q$n.csv" "q$n: CLI container answer differs"
done
say "CLI container answers equal"

say "killing an executor during a running query"
# A self-join of lineitem: two shuffle stages feed a join stage that runs
# for seconds. The executor is killed once a shuffle stage has completed, so
# its shuffle files are lost and the scheduler must recompute them.
cat > "$work/kill-query.sql" <<'SQL'
SELECT l1.l_returnflag, count(*) AS pairs, sum(l1.l_quantity * l2.l_quantity) AS q
  FROM lineitem l1 JOIN lineitem l2 ON l1.l_partkey = l2.l_partkey
  GROUP BY l1.l_returnflag ORDER BY l1.l_returnflag;
SQL
cat "$work/local-tables.sql" "$work/kill-query.sql" > "$work/kill-local.sql"
cat "$work/s3-tables.sql" "$work/kill-query.sql" > "$work/kill-s3.sql"
"$ember" sql --format csv -f "$work/kill-local.sql" > "$work/expected/kill.csv"
"$ember" sql --format csv --scheduler "$scheduler" -f "$work/kill-s3.sql" \
    > "$work/actual/kill.csv" 2> "$work/kill.err" &
query_pid=$!
# Wait until a job runs with at least one completed stage.
python3 - "$scheduler" "$query_pid" <<'PY' || fail "the query ended before a stage completed; nothing to kill mid-query"
import json, os, sys, time, urllib.request
scheduler, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 120
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(1)
    try:
        with urllib.request.urlopen(f"http://{scheduler}/api/jobs", timeout=2) as r:
            jobs = json.load(r)
    except OSError:
        jobs = []
    if any(j.get("status") == "Running" and j.get("completed_stages", 0) >= 1 for j in jobs):
        sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
PY
victim="$(compose ps -q executor | awk 'NR == 1')"
victim_host="$(docker inspect -f '{{.Config.Hostname}}' "$victim")"
docker kill "$victim" >/dev/null
killed_at=$(date +%s)
say "killed executor $victim_host after the job's first stage completed"
wait "$query_pid" || { cat "$work/kill.err" >&2; fail "the query failed after an executor was killed"; }
say "the query finished $(( $(date +%s) - killed_at ))s after the kill"
same_answer "$work/expected/kill.csv" "$work/actual/kill.csv" "the answer differs after executor loss"
wait_for_executors 1 60
# The scheduler must have noticed the loss itself: its probe found the
# executor gone (the usual way, within seconds), or its heartbeats stopped.
compose logs --no-color scheduler > "$work/scheduler.log" 2>&1 || true
grep -q -e "executor lost: removing it" -e "heartbeat timed out" "$work/scheduler.log" \
    || fail "the scheduler never reported the killed executor lost (probe or heartbeat timeout)"
say "the query completed with the right answer on the surviving executor"

say "scaling executors up to 3, then down to 1"
compose up -d --scale executor=3 --no-recreate >/dev/null 2>&1
wait_for_executors 3
run_query 5 "$work/s3-tables.sql" --scheduler "$scheduler" > "$work/actual/scaled-q5.csv"
same_answer "$work/expected/q5.csv" "$work/actual/scaled-q5.csv" "q5 differs with 3 executors"
remember_volumes
compose up -d --scale executor=1 --no-recreate >/dev/null 2>&1
wait_for_executors 1
run_query 3 "$work/s3-tables.sql" --scheduler "$scheduler" > "$work/actual/scaled-q3.csv"
same_answer "$work/expected/q3.csv" "$work/actual/scaled-q3.csv" "q3 differs with 1 executor"
compose up -d --scale executor=2 --no-recreate >/dev/null 2>&1
wait_for_executors 2
say "answers equal with 3 and with 1 executors"

say "writing partitioned Parquet to the store and reading it back"
cat > "$work/write.sql" <<SQL
$(cat "$work/s3-tables.sql")
COPY (SELECT o_orderkey, o_custkey, o_totalprice, o_orderpriority FROM orders)
  TO 's3://ember/out/orders_by_priority/' STORED AS PARQUET PARTITIONED BY (o_orderpriority);
CREATE EXTERNAL TABLE written STORED AS PARQUET PARTITIONED BY (o_orderpriority)
  LOCATION 's3://ember/out/orders_by_priority/';
SELECT o_orderpriority, count(*) AS orders, sum(o_totalprice) AS total
  FROM written GROUP BY o_orderpriority ORDER BY o_orderpriority;
SQL
cat > "$work/write-expected.sql" <<SQL
$(cat "$work/local-tables.sql")
SELECT o_orderpriority, count(*) AS orders, sum(o_totalprice) AS total
  FROM orders GROUP BY o_orderpriority ORDER BY o_orderpriority;
SQL
"$ember" sql --format csv --scheduler "$scheduler" -f "$work/write.sql" > "$work/actual/write.csv"
"$ember" sql --format csv -f "$work/write-expected.sql" > "$work/expected/write.csv"
# The COPY prints its row count first; the last query's rows end the output.
tail -n 6 "$work/actual/write.csv" > "$work/actual/write-tail.csv"
tail -n 6 "$work/expected/write.csv" > "$work/expected/write-tail.csv"
same_answer "$work/expected/write-tail.csv" "$work/actual/write-tail.csv" "the written table reads back differently"
compose exec -T s3 sh -c 'ls /var/lib/ember/s3/ember/out/orders_by_priority' > "$work/partitions.txt"
[ "$(grep -c '^o_orderpriority=' "$work/partitions.txt")" = 5 ] \
    || { cat "$work/partitions.txt" >&2; fail "expected 5 o_orderpriority= partitions in the store"; }
grep -q '^_SUCCESS$' "$work/partitions.txt" || fail "the write left no _SUCCESS marker"
say "5 partitions written, committed and read back equal"

say "the secured variant: a token and TLS from Docker secrets"
secrets="$work/secrets"
"$ember" cluster secrets --dir "$secrets" --names scheduler,localhost,127.0.0.1,ember-cluster >/dev/null
# The images run as uid 10001, which must read the secrets.
chown 10001:10001 "$secrets"/* 2>/dev/null || chmod 0644 "$secrets"/*
secure() {
    EMBER_SECRETS_DIR="$secrets" "${compose_cmd[@]}" -p "$project" \
        -f deploy/docker-compose.yml -f deploy/docker-compose.secure.yml "$@"
}
secure up -d >/dev/null 2>&1 || { secure up -d; fail "docker compose up (secured)"; }
rest_scheme=https
rest_args=(--cacert "$secrets/ca.pem" -H "Authorization: Bearer $(cat "$secrets/token")")
wait_for_executors 2
secured=(--scheduler "https://$scheduler" --tls-ca "$secrets/ca.pem" --token-file "$secrets/token")
for n in 1 6 13 18; do
    run_query "$n" "$work/s3-tables.sql" "${secured[@]}" > "$work/actual/secure-q$n.csv" \
        || fail "q$n failed on the secured cluster"
    same_answer "$work/expected/q$n.csv" "$work/actual/secure-q$n.csv" "q$n differs on the secured cluster"
done
cat "$work/s3-tables.sql" "client/src/tpch/queries/q6.sql" \
    | secure run --rm -T ember sql --format csv > "$work/actual/secure-cli-q6.csv" 2> "$work/secure-cli.err" \
    || { cat "$work/secure-cli.err" >&2; fail "q6 failed in the CLI container on the secured cluster"; }
same_answer "$work/expected/q6.csv" "$work/actual/secure-cli-q6.csv" "q6 differs in the secured CLI container"
# Refusals: no token, plain text on the TLS port, REST without the token.
if "$ember" sql --scheduler "https://$scheduler" --tls-ca "$secrets/ca.pem" -c "SELECT 1" \
        > /dev/null 2> "$work/no-token.err"; then
    fail "a client without the token was let in"
fi
grep -q "it requires a token" "$work/no-token.err" || { cat "$work/no-token.err" >&2; fail "no clear refusal without a token"; }
if "$ember" sql --scheduler "$scheduler" --token-file "$secrets/token" -c "SELECT 1" \
        > /dev/null 2> "$work/plain.err"; then
    fail "a plain-text client was let in"
fi
grep -q "if it serves TLS" "$work/plain.err" || { cat "$work/plain.err" >&2; fail "no clear refusal of plain text"; }
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$secrets/ca.pem" "https://$scheduler/api/jobs")
[ "$status" = 401 ] || fail "the REST API answered $status without the token, not 401"
secure logs --no-color scheduler > "$work/secure-scheduler.log" 2>&1 || true
grep -q "refused an unauthenticated request" "$work/secure-scheduler.log" \
    || fail "the scheduler logged no refusal"
if grep -q -F "$(cat "$secrets/token")" "$work/secure-scheduler.log"; then
    fail "the token appears in the scheduler's log"
fi
say "secured cluster: 5 answers equal, refusals clear, no token in the logs"

say "passed in $(( $(date +%s) - started ))s"
