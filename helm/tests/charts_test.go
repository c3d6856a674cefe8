package helmtests

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// The image's user (docker/Dockerfile `USER 10001:10001`).
const imageUser = 10001

// helm: $HELM, else on PATH, else ~/go/bin/helm (where `go install` puts it).
func helmBinary(t *testing.T) string {
	if path := os.Getenv("HELM"); path != "" {
		return path
	}
	if path, err := exec.LookPath("helm"); err == nil {
		return path
	}
	if home, err := os.UserHomeDir(); err == nil {
		path := filepath.Join(home, "go", "bin", "helm")
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	t.Fatalf("helm not found: install it with `go install helm.sh/helm/v4/cmd/helm@v4.3.2` (cargo xtask test and .ci/run do) or set HELM")
	return ""
}

type chart struct {
	dir     string
	name    string
	library bool
	deps    bool
	values  []string // "" = the chart's defaults, else a ci/*-values.yaml path
}

// Every helm/*/ with a Chart.yaml, so a chart added later is checked too.
func charts(t *testing.T) []chart {
	dirs, err := filepath.Glob("../*/Chart.yaml")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no charts under helm/: %v", err)
	}
	var found []chart
	for _, file := range dirs {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			Name         string           `json:"name"`
			Type         string           `json:"type"`
			Dependencies []map[string]any `json:"dependencies"`
		}
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		dir := filepath.Dir(file)
		values, _ := filepath.Glob(filepath.Join(dir, "ci", "*-values.yaml"))
		sort.Strings(values)
		found = append(found, chart{
			dir: dir, name: meta.Name, library: meta.Type == "library", deps: len(meta.Dependencies) > 0,
			values: append([]string{""}, values...),
		})
	}
	return found
}

func run(t *testing.T, helm string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helm, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func render(t *testing.T, helm string, c chart, values string) []byte {
	t.Helper()
	args := []string{"template", "analytics", c.dir, "--namespace", "analytics"}
	if values != "" {
		args = append(args, "-f", values)
	}
	cmd := exec.Command(helm, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func label(values string) string {
	if values == "" {
		return "default"
	}
	return strings.TrimSuffix(filepath.Base(values), "-values.yaml")
}

// TestCharts: `helm lint --strict` of every chart with its defaults and each
// ci/*-values.yaml, `helm template` of every application chart with the
// same, each manifest decoded strictly into its API type and checked
// against the deployment rules below. With RENDERED_OUT set, the decoded
// manifests of each render are written there as JSON
// (<chart>__<values>.json) for the services' own contract test
// (crates/chart-tests).
func TestCharts(t *testing.T) {
	helm := helmBinary(t)
	out := os.Getenv("RENDERED_OUT")
	if out != "" {
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range charts(t) {
		if c.deps {
			run(t, helm, "dependency", "update", "--skip-refresh", c.dir)
		}
		for _, values := range c.values {
			name := c.name + "/" + label(values)
			t.Run(name, func(t *testing.T) {
				args := []string{"lint", "--strict", c.dir}
				if values != "" {
					args = append(args, "-f", values)
				}
				run(t, helm, args...)
				if c.library {
					return
				}
				objects, err := DecodeAll(render(t, helm, c, values))
				if err != nil {
					t.Fatalf("strict decoding against the Kubernetes API types:\n%v", err)
				}
				if len(objects) == 0 && values == "" {
					t.Fatal("rendered nothing with its default values")
				}
				for _, problem := range checkRules(objects) {
					t.Error(problem)
				}
				if out != "" {
					generic := make([]map[string]any, 0, len(objects))
					for _, o := range objects {
						generic = append(generic, o.Generic)
					}
					raw, err := json.MarshalIndent(generic, "", "  ")
					if err != nil {
						t.Fatal(err)
					}
					file := filepath.Join(out, c.name+"__"+label(values)+".json")
					if err := os.WriteFile(file, raw, 0o644); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}

// checkRules: what every workload of these charts must be, whatever the values.
func checkRules(objects []Object) []string {
	var problems []string
	bad := func(o Object, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s %s: %s", o.Kind, o.Name, fmt.Sprintf(format, args...)))
	}
	deployments := map[string]*appsv1.Deployment{}
	services := map[string]*corev1.Service{}
	for _, o := range objects {
		switch v := o.Typed.(type) {
		case *appsv1.Deployment:
			deployments[o.Name] = v
		case *corev1.Service:
			services[o.Name] = v
		}
	}
	for _, o := range objects {
		switch v := o.Typed.(type) {
		case *appsv1.Deployment:
			for _, p := range checkPod(&v.Spec.Template.Spec, true) {
				bad(o, "%s", p)
			}
			if !selects(v.Spec.Selector.MatchLabels, v.Spec.Template.Labels) {
				bad(o, "selector %v does not select its pods' labels %v", v.Spec.Selector.MatchLabels, v.Spec.Template.Labels)
			}
		case *batchv1.Job:
			for _, p := range checkPod(&v.Spec.Template.Spec, false) {
				bad(o, "%s", p)
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			if _, ok := deployments[v.Spec.ScaleTargetRef.Name]; !ok || v.Spec.ScaleTargetRef.Kind != "Deployment" {
				bad(o, "scales %s %s, which is not rendered", v.Spec.ScaleTargetRef.Kind, v.Spec.ScaleTargetRef.Name)
			} else if d := deployments[v.Spec.ScaleTargetRef.Name]; d.Spec.Replicas != nil {
				bad(o, "its Deployment also sets replicas (they would fight)")
			}
			if v.Spec.MinReplicas == nil || *v.Spec.MinReplicas < 1 || *v.Spec.MinReplicas > v.Spec.MaxReplicas {
				bad(o, "minReplicas must be 1..maxReplicas")
			}
		case *policyv1.PodDisruptionBudget:
			if !anyDeploymentSelected(deployments, v.Spec.Selector.MatchLabels) {
				bad(o, "selects no rendered Deployment's pods")
			}
		case *networkingv1.Ingress:
			for _, rule := range v.Spec.Rules {
				for _, path := range rule.HTTP.Paths {
					backend := path.Backend.Service
					if backend == nil || backend.Port.Name != "http" {
						bad(o, "path %s must route to the Service port named http (never the ops port)", path.Path)
						continue
					}
					svc, ok := services[backend.Name]
					if !ok {
						bad(o, "routes to Service %s, which is not rendered", backend.Name)
						continue
					}
					if !hasPort(svc, "http") {
						bad(o, "Service %s has no port named http", backend.Name)
					}
				}
			}
		case *corev1.Service:
			for _, port := range v.Spec.Ports {
				if port.TargetPort.StrVal != port.Name {
					bad(o, "port %s targets %q: use the container port's name", port.Name, port.TargetPort.String())
				}
			}
			if !anyDeploymentSelected(deployments, v.Spec.Selector) {
				bad(o, "selects no rendered Deployment's pods")
			}
		}
		if o.Kind == "ServiceMonitor" || o.Kind == "PodMonitor" {
			raw, _ := json.Marshal(o.Generic["spec"])
			if !strings.Contains(string(raw), `"port":"ops"`) || !strings.Contains(string(raw), `"path":"/metrics"`) {
				bad(o, "must scrape /metrics on the port named ops")
			}
		}
	}
	return problems
}

func checkPod(pod *corev1.PodSpec, service bool) []string {
	var problems []string
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		problems = append(problems, "enableServiceLinks must be false (a Service named clickhouse would set CLICKHOUSE_PORT=tcp://…)")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		problems = append(problems, "automountServiceAccountToken must be false")
	}
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != imageUser {
		problems = append(problems, fmt.Sprintf("pod securityContext: runAsNonRoot true and runAsUser %d", imageUser))
	}
	if len(pod.Containers) == 0 {
		return append(problems, "no container")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			problems = append(problems, c.Name+": no securityContext")
		default:
			if sc.RunAsUser == nil || *sc.RunAsUser != imageUser || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				problems = append(problems, fmt.Sprintf("%s: runAsNonRoot true and runAsUser %d", c.Name, imageUser))
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				problems = append(problems, c.Name+": readOnlyRootFilesystem must be true")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				problems = append(problems, c.Name+": allowPrivilegeEscalation must be false")
			}
			if sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0 {
				problems = append(problems, c.Name+": capabilities must drop ALL and add none")
			}
		}
		if c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
			problems = append(problems, c.Name+": needs a memory limit and a CPU request")
		}
		if !service {
			continue
		}
		for probe, want := range map[string]struct {
			p    *corev1.Probe
			path string
		}{"livenessProbe": {c.LivenessProbe, "/health"}, "readinessProbe": {c.ReadinessProbe, "/ready"}} {
			if want.p == nil || want.p.HTTPGet == nil || want.p.HTTPGet.Path != want.path || want.p.HTTPGet.Port.StrVal != "ops" {
				problems = append(problems, fmt.Sprintf("%s: %s must GET %s on the port named ops", c.Name, probe, want.path))
			}
		}
		if c.StartupProbe != nil && (c.StartupProbe.HTTPGet == nil || c.StartupProbe.HTTPGet.Path != "/health") {
			problems = append(problems, c.Name+": startupProbe must GET /health")
		}
		names := map[string]bool{}
		for _, port := range c.Ports {
			names[port.Name] = true
		}
		if !names["ops"] {
			problems = append(problems, c.Name+": no container port named ops")
		}
	}
	return problems
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func anyDeploymentSelected(deployments map[string]*appsv1.Deployment, selector map[string]string) bool {
	for _, d := range deployments {
		if selects(selector, d.Spec.Template.Labels) {
			return true
		}
	}
	return false
}

func hasPort(svc *corev1.Service, name string) bool {
	for _, port := range svc.Spec.Ports {
		if port.Name == name {
			return true
		}
	}
	return false
}

// TestValuesSchemasRefuseMisspeltValues: each service chart's
// values.schema.json (helm/tests/values_schema.py) makes helm refuse a value
// the chart does not have, instead of ignoring it.
func TestValuesSchemasRefuseMisspeltValues(t *testing.T) {
	helm := helmBinary(t)
	for _, c := range charts(t) {
		if c.library {
			continue
		}
		if _, err := os.Stat(filepath.Join(c.dir, "values.schema.json")); err != nil {
			continue
		}
		if c.deps {
			run(t, helm, "dependency", "update", "--skip-refresh", c.dir)
		}
		for _, set := range []string{"replicaCout=3", "ingress.enable=true", "probes.readiness.periodSecond=1"} {
			out, err := exec.Command(helm, "template", "analytics", c.dir, "--set", set).CombinedOutput()
			if err == nil || !strings.Contains(string(out), "additional properties") {
				t.Errorf("%s: --set %s was not refused by values.schema.json: %v\n%s", c.name, set, err, out)
			}
		}
	}
}

// TestDashboardsRefuseABrokenFile: a chart whose dashboard file is missing or
// is not JSON fails to render (analytics-common.dashboard for the service
// charts, the analytics-alerts chart's own template for the overview), so a
// broken dashboard never reaches Grafana as an empty or unreadable ConfigMap.
func TestDashboardsRefuseABrokenFile(t *testing.T) {
	helm := helmBinary(t)
	for _, c := range []struct{ chart, file string }{
		{"ingest-gateway", "ingest-gateway.json"},
		{"analytics-alerts", "overview.json"},
	} {
		src := filepath.Join("..", c.chart)
		raw, _ := os.ReadFile(filepath.Join(src, "Chart.yaml"))
		if strings.Contains(string(raw), "dependencies:") {
			run(t, helm, "dependency", "update", "--skip-refresh", src)
		}
		for _, tc := range []struct {
			name, content, want string
		}{
			{"invalid", "{\"panels\": [", "is not valid JSON"},
			{"missing", "", "is missing from the chart"},
		} {
			dir := filepath.Join(t.TempDir(), c.chart)
			if out, err := exec.Command("cp", "-r", src, dir).CombinedOutput(); err != nil {
				t.Fatalf("cp -r %s: %v\n%s", src, err, out)
			}
			path := filepath.Join(dir, "dashboards", c.file)
			if tc.content == "" {
				if err := os.Remove(path); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(helm, "template", "analytics", dir).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Errorf("%s with a %s dashboard: want a failure saying %q, got %v\n%s", c.chart, tc.name, tc.want, err, out)
			}
		}
	}
}
