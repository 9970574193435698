# source me: run CMD... prints "$ CMD" and the output indented
run() { echo "\$ $*"; eval "$@" 2>&1 | sed '/^$/d; s/^/    /'; }
