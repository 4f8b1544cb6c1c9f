#!/usr/bin/env bash
# A CI pipeline for a cluster kept in git, with the state shared in PostgreSQL:
#   on a branch: validate, then plan; the markdown plan goes to a file for the pull-request comment and
#                the saved plan to plan.bin (exit 0 either way; "changes" or "no changes" is printed);
#   on main:     validate, apply, then check that the cluster converged (plan --detailed-exitcode = 0).
#
#   SEALER_STATE=postgres://USER:PASSWORD@HOST/DB bash examples/ci/pipeline.sh BRANCH [CLUSTERFILE] [COMMENT]
#
# SEALER names the sealer binary (default: sealer on the PATH). The ssh credentials are the Clusterfile's;
# plans, comments and logs never show them.
set -euo pipefail
branch=${1:?usage: pipeline.sh BRANCH [CLUSTERFILE] [COMMENT_FILE]}
file=${2:-Clusterfile}
comment=${3:-plan-comment.md}
sealer=${SEALER:-sealer}
: "${SEALER_STATE:?set SEALER_STATE to the shared state, postgres://USER:PASSWORD@HOST/DB}"

"$sealer" validate -f "$file"
if [ "$branch" = main ]; then
  "$sealer" apply -f "$file" --auto-approve --no-progress
  "$sealer" plan -f "$file" --detailed-exitcode --no-color > /dev/null
  echo "applied: the cluster matches $file"
else
  set +e
  "$sealer" plan -f "$file" --format markdown --detailed-exitcode --out plan.bin > "$comment"
  rc=$?
  set -e
  case $rc in
    0) echo "no changes ($comment)" ;;
    2) echo "changes: the plan is in $comment, saved as plan.bin" ;;
    *) exit "$rc" ;;
  esac
fi
