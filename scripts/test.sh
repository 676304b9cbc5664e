#!/usr/bin/env bash
# Runs the whole test suite on real services: the embedded PostgreSQL (started by the
# tests themselves), Apache Kafka (KRaft) and Mosquitto (started here, stopped at the end).
# BILLING_TEST_NO_INFRA=1 skips Kafka/Mosquitto; the tests that need them are then skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${BILLING_TEST_NO_INFRA:-0}" != "1" ]; then
  # Debian's packages: the MQTT broker; docker-compose (validates the compose file, needs
  # no engine) and prometheus (promtool checks the alert rules)
  missing=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
  # headless Chromium and its driver for the portal's browser tests; DejaVu for PDF text
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
  [ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
      echo "installing from Debian's packages: ${missing[*]}"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    else
      echo "missing: ${missing[*]} (apt-get install -y ${missing[*]})" >&2
      exit 1
    fi
  fi
  stop_services() {
    infra/kafka/kafka.sh stop >/dev/null 2>&1 || true
    infra/mosquitto/mosquitto.sh stop >/dev/null 2>&1 || true
  }
  trap stop_services EXIT
  infra/kafka/kafka.sh start
  infra/mosquitto/mosquitto.sh start
  export BILLING_TEST_KAFKA_BOOTSTRAP="127.0.0.1:${BILLING_KAFKA_PORT:-19092}"
  var_dir="${BILLING_VAR_DIR:-var}"
  case "$var_dir" in /*) ;; *) var_dir="$PWD/$var_dir" ;; esac
  export BILLING_TEST_MQTT_CREDENTIALS="$var_dir/mosquitto/credentials.env"
fi

set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
exit $status
