"""Grid work: coordinators assigned to grids, the six-step task workflow
(上报 → 派遣 → 处置 → 核查 → 评价 → 归档), patrol schedules by grade, the
overdue list and workload against the staffing ratio."""
