-- A validated constraint cannot be marked NOT VALID again; nothing to undo.
SELECT 1;
