{{/*
The alert rule groups of the PrometheusRule (checked and unit-tested with promtool in
tests/unit/test_chart_monitoring.py).
*/}}
{{- define "ponder.alertGroups" -}}
{{- $rule := .Values.metrics.prometheusRule }}
groups:
  - name: ponder.rules
    rules:
      - alert: PonderOperatorDown
        expr: |
          sum(kube_deployment_status_replicas_available{namespace="{{ .Release.Namespace }}", deployment="{{ include "ponder.fullname" . }}"}) < 1
        for: {{ $rule.operatorDownFor }}
        labels:
          severity: critical
          {{- with $rule.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: No Ponder operator replica is available.
          description: >-
            The operator Deployment {{ .Release.Namespace }}/{{ include "ponder.fullname" . }}
            has had no available replica for {{ $rule.operatorDownFor }}: ReasoningServices are
            neither reconciled nor autoscaled. Check its pods and their logs.
      - alert: PonderReasoningServiceDegraded
        expr: |
          max by (namespace, reasoningservice, reason) (ponder_reasoningservice_status_condition{type="Degraded"}) == 1
        for: {{ $rule.degradedFor }}
        labels:
          severity: warning
          {{- with $rule.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: 'ReasoningService {{ "{{ $labels.namespace }}/{{ $labels.reasoningservice }}" }} is Degraded ({{ "{{ $labels.reason }}" }}).'
          description: >-
            The autoscaler cannot trust its signals (Prometheus unreachable or metrics stale),
            so it holds the replica count. Run kubectl describe rsvc and check Prometheus.
      - alert: PonderReasoningServiceUnschedulable
        expr: |
          max by (namespace, reasoningservice, reason) (ponder_reasoningservice_status_condition{type="Unschedulable"}) == 1
        for: {{ $rule.unschedulableFor }}
        labels:
          severity: warning
          {{- with $rule.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: 'Triton pods of {{ "{{ $labels.namespace }}/{{ $labels.reasoningservice }}" }} cannot be scheduled ({{ "{{ $labels.reason }}" }}).'
          description: >-
            Triton pods have been Pending for want of a node for {{ $rule.unschedulableFor }}:
            not enough free GPUs of the requested product. Add GPU nodes, lower maxReplicas or
            maxGpus, or pick another gpuProduct.
      - alert: PonderRouterRejecting
        expr: |
          sum by (namespace, reasoningservice) (rate(ponder_router_rejections_total{reason=~"queue|queue-timeout|tenant|no-endpoint"}[5m])) > {{ $rule.rejectionsPerSecond }}
        for: {{ $rule.rejectionsFor }}
        labels:
          severity: warning
          {{- with $rule.alertLabels }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        annotations:
          summary: 'Routers of {{ "{{ $labels.namespace }}/{{ $labels.reasoningservice }}" }} keep refusing requests for overload (429/503).'
          description: >-
            More than {{ $rule.rejectionsPerSecond }} requests per second have been refused
            for overload (429: queue full or tenant limit; 503: queue timeout or no Triton
            replica in time) for {{ $rule.rejectionsFor }}. The pool may be at maxReplicas or
            maxGpus (status.atCeiling) or waiting for GPUs. Client faults (401, 403, 413, a
            prompt over maxPromptChars) are not counted here.
{{- end }}
