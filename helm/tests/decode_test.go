package helmtests

import (
	"strings"
	"testing"
)

const deployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: x
spec:
  selector:
    matchLabels: {app: x}
  template:
    metadata:
      labels: {app: x}
    spec:
      containers:
        - name: x
          image: x
          securityContext:
            %s: 10001
`

// The strict decoder is what makes TestCharts worth anything: prove it
// refuses a misspelt field, a duplicate key, a wrong type and an unknown kind.
func TestStrictDecodingRefusesWhatTheAPIServerWould(t *testing.T) {
	if _, err := DecodeStrict([]byte(strings.Replace(deployment, "%s", "runAsUser", 1))); err != nil {
		t.Fatalf("a valid Deployment was refused: %v", err)
	}
	cases := map[string]string{
		"unknown field": strings.Replace(deployment, "%s", "runAsUserr", 1),
		"wrong type":    strings.Replace(strings.Replace(deployment, "%s", "runAsUser", 1), "10001", "root", 1),
		"duplicate key": strings.Replace(deployment, "%s: 10001", "runAsUser: 1\n            runAsUser: 2", 1),
		"unknown kind":  strings.Replace(strings.Replace(deployment, "%s", "runAsUser", 1), "kind: Deployment", "kind: Deploymnet", 1),
		"old API":       strings.Replace(strings.Replace(deployment, "%s", "runAsUser", 1), "apps/v1", "extensions/v1beta1", 1),
		"ServiceMonitor field": `apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata: {name: x}
spec:
  selector: {matchLabels: {a: b}}
  endpoints: [{port: ops, pathh: /metrics}]
`,
	}
	for name, doc := range cases {
		if _, err := DecodeStrict([]byte(doc)); err == nil {
			t.Errorf("%s: accepted:\n%s", name, doc)
		} else {
			t.Logf("%s: refused: %v", name, err)
		}
	}
}

// The deployment rules refuse a pod that would run as root with service links.
func TestRulesRefuseAnUnhardenedPod(t *testing.T) {
	objects, err := DecodeAll([]byte(strings.Replace(deployment, "%s", "runAsUser", 1)))
	if err != nil {
		t.Fatal(err)
	}
	problems := strings.Join(checkRules(objects), "\n")
	for _, want := range []string{"enableServiceLinks", "readOnlyRootFilesystem", "capabilities", "livenessProbe", "memory limit"} {
		if !strings.Contains(problems, want) {
			t.Errorf("no problem about %s in:\n%s", want, problems)
		}
	}
}
