#!/usr/bin/env bash
# Builds the Kubernetes tools the chart checks use into .tools/bin from the Go module proxy:
# helm, kubeconform (+ the JSON schemas of the PyPI package kubernetes-validate, made local),
# helm-unittest, kube-score, kube-apiserver and etcd. A tool already in .tools/bin is skipped,
# so a second run costs nothing; each build prints how long it took.
# Override the directory with FRESHCART_TOOLS_DIR and a version with the *_VERSION variables.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS_DIR=${FRESHCART_TOOLS_DIR:-$PWD/.tools}
BIN=$TOOLS_DIR/bin
SRC=$TOOLS_DIR/src
PY=${PY:-$PWD/.venv/bin/python}
HELM_VERSION=${HELM_VERSION:-v3.22.0}
KUBECONFORM_VERSION=${KUBECONFORM_VERSION:-v0.8.0}
HELM_UNITTEST_VERSION=${HELM_UNITTEST_VERSION:-v1.1.2}
KUBE_SCORE_VERSION=${KUBE_SCORE_VERSION:-v1.20.0}
KUBERNETES_VERSION=${KUBERNETES_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.7.3}

if ! command -v go > /dev/null; then
  if [ -x /usr/local/go/bin/go ]; then
    PATH=/usr/local/go/bin:$PATH
  else
    echo "build-tools: 'go' is not on PATH; install Go 1.26+ (https://go.dev/dl) and rerun 'make setup'" >&2
    exit 1
  fi
fi
export GOBIN=$BIN GOFLAGS=-buildvcs=false CGO_ENABLED=0
mkdir -p "$BIN" "$SRC"

# build NAME COMMAND...: runs COMMAND unless .tools/bin/NAME exists, and prints the time it took.
# (The schemas are "built" when .tools/schemas/.complete exists.)
build() {
  local name=$1 target=$BIN/$1
  shift
  [ "$name" = kube-schemas ] && target=$TOOLS_DIR/schemas/.complete
  if [ -e "$target" ]; then
    echo "build-tools: $name present, skipped"
    return
  fi
  local start=$SECONDS
  echo "build-tools: building $name"
  "$@"
  test -e "$target" || { echo "build-tools: $name was not produced" >&2; exit 1; }
  echo "build-tools: $name built in $((SECONDS - start)) s"
}

module_dir() {  # module_dir MODULE@VERSION: downloads the module and prints its directory
  go mod download -json "$1" | "$PY" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'
}

# wrapper_module NAME MODULE VERSION REPLACED_VERSION: a module that requires MODULE@VERSION and
# points each of MODULE's local `replace ./...` directives (which Go ignores in a dependency and
# `go install` refuses) at the published module of REPLACED_VERSION, so its commands build.
wrapper_module() {
  local name=$1 module=$2 version=$3 replaced=$4 dir
  dir=$(module_dir "$module@$version")
  rm -rf "${SRC:?}/$name" && mkdir -p "$SRC/$name"
  (
    cd "$SRC/$name"
    go mod init "freshcart.tools/$name" > /dev/null 2>&1
    go mod edit -require="$module@$version"
    go mod edit -json "$dir/go.mod" | "$PY" -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    if r["New"]["Path"].startswith("."):
        print(r["Old"]["Path"])
' | while read -r path; do go mod edit -replace="$path=$path@$replaced"; done
  )
}

build_helm() {
  local minor
  minor=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" > /dev/null &&
    go mod edit -json "$(module_dir "helm.sh/helm/v3@$HELM_VERSION")/go.mod" | "$PY" -c '
import json, sys
print(next(r["Version"] for r in json.load(sys.stdin)["Require"] if r["Path"] == "k8s.io/client-go").split(".")[1])')
  # Without these ldflags helm reports Kubernetes v1.20 as its default capabilities.
  go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_helm_unittest() {
  # Its go.mod replaces vmware-labs/yaml-jsonpath, which `go install module@version` refuses:
  # build it inside a copy of the module so the replace applies.
  local dir
  dir=$(module_dir "github.com/helm-unittest/helm-unittest@$HELM_UNITTEST_VERSION")
  rm -rf "$SRC/helm-unittest" && cp -r "$dir" "$SRC/helm-unittest" && chmod -R u+w "$SRC/helm-unittest"
  (cd "$SRC/helm-unittest" && go build -trimpath -ldflags "-s -w" -o "$BIN/helm-unittest" ./cmd/helm-unittest)
}

build_kube_apiserver() {
  local k8s_minor=${KUBERNETES_VERSION#v1.}
  wrapper_module kube-apiserver k8s.io/kubernetes "$KUBERNETES_VERSION" "v0.$k8s_minor"
  local major=1 minor=${k8s_minor%%.*}
  local ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  done
  (cd "$SRC/kube-apiserver" && go build -mod=mod -trimpath -ldflags "$ld" \
    -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
}

build_etcd() {
  wrapper_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION"
  (cd "$SRC/etcd" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
}

build_schemas() {
  # kubeconform checks against the strict schemas of kubernetes-validate (pinned in the lock); their
  # $refs point at "/api/_definitions.json" of https://kubernetes.io, which kubeconform cannot
  # fetch offline, so they are rewritten to the file next to them.
  # kubernetes-validate ships one schema set per minor release (x.y.0)
  local minor=${KUBERNETES_VERSION#v1.}
  "$PY" - "$TOOLS_DIR/schemas" "1.${minor%%.*}.0" <<'PYTHON'
import json, pathlib, sys
import kubernetes_validate
target, version = pathlib.Path(sys.argv[1]), sys.argv[2]
source = pathlib.Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
if not source.is_dir():
    sys.exit(f"build-tools: kubernetes-validate has no schemas for Kubernetes {version} ({source}); "
             "set KUBERNETES_VERSION to one it ships")
target.mkdir(parents=True, exist_ok=True)
for path in source.glob("*.json"):
    schema = json.loads(path.read_text().replace('"/api/_definitions.json#', '"_definitions.json#'))
    schema.pop("$id", None)  # an https $id would make the $refs resolve against kubernetes.io
    (target / path.name).write_text(json.dumps(schema))
print(f"build-tools: {len(list(target.glob('*.json')))} schemas of Kubernetes {version} in {target}")
PYTHON
  touch "$TOOLS_DIR/schemas/.complete"
}

main() {
  total=$SECONDS
  build helm build_helm
  build kubeconform go install -trimpath -ldflags "-s -w" "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"
  build kube-score go install -trimpath -ldflags "-s -w" "github.com/zegl/kube-score/cmd/kube-score@$KUBE_SCORE_VERSION"
  build helm-unittest build_helm_unittest
  build kube-schemas build_schemas
  build etcd build_etcd
  build kube-apiserver build_kube_apiserver
  echo "build-tools: all tools in $BIN ($((SECONDS - total)) s)"
}

main "$@"
