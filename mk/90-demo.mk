# `make demo`: the whole product on a laptop — embedded warehouse, sandbox API, the Airflow DAG run
# for real in local runtime, a summary of what was published, then the dashboard (foreground).

##@ Local

.PHONY: demo
demo: ## The whole pipeline on this machine (embedded DB, sandbox API, real DAG run), then the dashboard on :8501
	@$(MAKE) db-up
	@$(MAKE) run
	@echo
	@echo "==> published marts"
	@$(MAKE) marts-summary
	@echo
	@echo "==> next: the dashboard on http://localhost:$(DASHBOARD_PORT) (Ctrl-C stops it; \`make db-down sandbox-down\` stops the rest)"
	@$(MAKE) dashboard
