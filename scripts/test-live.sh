#!/bin/bash
# test-live.sh [pytest args] - a named, representative set of the functional API tests, sent over
# the network to the service as admins host it (Debian 12, root; after scripts/test.sh set things up):
#   HCC_LIVE=apache    Apache + mod_wsgi, daemon mode, TLS (started by scripts/testbed/up.sh)
#   HCC_LIVE=replicas  two pserve replicas on one MariaDB database behind HAProxy (scripts/replicas.sh)
# The tests left out look inside the app in the test process (its registry, spies on the SSH pool),
# set the client address through WebTest, or expect WebTest's own host name in a URL.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${HCC_VENV:-$ROOT/.venv}/bin/pytest"
bash scripts/testbed/up.sh > /dev/null
bash scripts/replicas.sh up > /dev/null
SET=(tests/functional/test_api_basics.py tests/functional/test_api_clusters.py
     tests/functional/test_api_error_codes.py tests/functional/test_api_hostile_input.py
     tests/functional/test_api_jobs.py tests/functional/test_api_me.py
     tests/functional/test_api_sessions.py)
IN_PROCESS=(test_audit_log_records_logins_logouts_and_failures_without_secrets
  test_a_second_request_reuses_the_connection
  test_a_since_after_today_everywhere_is_a_400_naming_since
  test_a_lone_surrogate_in_a_job_is_a_400_and_runs_nothing
  test_a_submission_is_recorded_in_the_registry
  test_slurms_refusal_is_a_400_with_its_message_and_no_record
  test_invalid_bodies_are_400_and_run_nothing
  test_invalid_list_queries_are_400_and_run_nothing
  test_hostile_job_ids_are_refused_before_anything_runs
  test_wrong_current_passwords_count_against_the_login_limits
  test_concurrent_wrong_logins_on_two_replicas_never_pass_the_per_user_limit
  test_an_attempt_whose_request_died_ages_out_with_the_window
  test_bob_cannot_read_an_upload_over_alices_private_file_while_it_is_in_flight
  test_cut_off_uploads_leave_no_file test_big_download_streams_and_gives_its_channel_back
  test_links_work_without_a_token_until_expiry_or_logout)
# Apache itself answers a path holding %00 (404) and folds "/.." before the app sees the path
FRONT_END=(test_any_bytes_in_the_path_or_the_query_never_give_a_5xx test_unknown_clusters_are_404_envelopes)
deselect="not ($(printf '%s or ' "${IN_PROCESS[@]}" "${FRONT_END[@]}" "ldap_down" "stopped")outage)"
status=0
for live in apache replicas; do
  echo "test-live: HCC_LIVE=$live"
  HCC_LIVE=$live "$PY" -p no:cacheprovider -q "${SET[@]}" -k "$deselect" "$@" || status=1
done
# the file system API through Apache, on one cluster (alpha) (uploads and downloads are what mod_wsgi changes;
# tests/functional/test_hosted.py streams uploads through it besides)
echo "test-live: HCC_LIVE=apache, files on alpha"
HCC_LIVE=apache "$PY" -p no:cacheprovider -q tests/functional/test_api_files.py -k "not beta and $deselect" "$@" \
  || status=1
exit $status
