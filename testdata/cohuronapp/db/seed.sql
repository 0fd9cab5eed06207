-- seed.sql: deterministic sample data, imported last (see db/ORDER.txt):
-- 3 businesses, 6 projects (2 each), 6 employees, 30 tasks (5 per project),
-- 4 settings. Ids are derived from md5 of a fixed label, and timestamps from
-- a fixed epoch, so every import produces the same rows.

INSERT INTO app.settings (key, value, description, updated_at) VALUES
    ('app.name',          'Cohuron PMO (sample)', 'Display name',                 '2024-01-01T00:00:00Z'),
    ('app.locale',        'en-CA',                'Default locale',               '2024-01-01T00:00:00Z'),
    ('tasks.page_size',   '10',                   'Tasks per page in the API',    '2024-01-01T00:00:00Z'),
    ('features.timeline', 'true',                 'Show the project timeline',    '2024-01-01T00:00:00Z');

INSERT INTO app.business (id, name, created_at)
SELECT md5('business-' || b)::uuid,
       'Business ' || b,
       timestamptz '2024-01-01T00:00:00Z' + b * interval '1 day'
FROM generate_series(1, 3) AS b;

INSERT INTO app.project (id, business_id, code, name, status, created_at)
SELECT md5('project-' || p)::uuid,
       md5('business-' || ((p - 1) / 2 + 1))::uuid,
       'P-' || lpad(p::text, 3, '0'),
       'Project ' || p,
       (ARRAY['active', 'planned', 'on_hold'])[(p - 1) % 3 + 1],
       timestamptz '2024-02-01T00:00:00Z' + p * interval '1 day'
FROM generate_series(1, 6) AS p;

INSERT INTO app.employee (id, business_id, default_project_id, name, email, password_hash, created_at)
SELECT md5('employee-' || e)::uuid,
       md5('business-' || ((e - 1) / 2 + 1))::uuid,
       md5('project-' || e)::uuid,
       'Employee ' || e,
       'employee' || e || '@example.com',
       -- fixed salt, so the seed stays deterministic; password is "sample".
       crypt('sample', '$2a$04$cohuronsampleseedsalt.'),
       timestamptz '2024-02-15T00:00:00Z' + e * interval '1 hour'
FROM generate_series(1, 6) AS e;

INSERT INTO app.tasks (id, project_id, assignee_id, title, status, created_at)
SELECT md5('task-' || t)::uuid,
       md5('project-' || ((t - 1) / 5 + 1))::uuid,
       md5('employee-' || ((t - 1) / 5 + 1))::uuid,
       'Task ' || lpad(t::text, 2, '0'),
       (ARRAY['open', 'in_progress', 'done', 'open', 'blocked'])[(t - 1) % 5 + 1],
       timestamptz '2024-03-01T00:00:00Z' + t * interval '1 hour'
FROM generate_series(1, 30) AS t;
