-- Argo CD health check for annostack's Tenant, Dataset and ProcessingJob (Lua 5.1, gopher-lua).
-- Reads the status the operator writes: observedGeneration, kstatus' Reconciling and Stalled
-- (present only while True), Ready, and for jobs Complete/Failed; the phase is a fallback.
local hs = {}

local function condition(conditions, type_)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

local function say(c, fallback)
  if c ~= nil and c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c ~= nil and c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return fallback
end

local meta = obj.metadata or {}
if meta.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: the operator is removing (or retaining) its backends"
  return hs
end

local annotations = meta.annotations or {}
local spec = obj.spec or {}
if spec.paused == true or annotations["annostack.io/paused"] == "true" then
  hs.status = "Suspended"
  hs.message = "Paused: the operator changes no backend"
  return hs
end

local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
if meta.generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < meta.generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(meta.generation)
  return hs
end

local conditions = status.conditions
local stalled = condition(conditions, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = say(stalled, "Stalled")
  return hs
end
local failed = condition(conditions, "Failed")
if is_true(failed) then
  hs.status = "Degraded"
  hs.message = say(failed, "Failed")
  return hs
end
local complete = condition(conditions, "Complete")
if is_true(complete) then
  hs.status = "Healthy"
  hs.message = say(complete, "Complete")
  return hs
end
local reconciling = condition(conditions, "Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = say(reconciling, "Reconciling")
  return hs
end
local ready = condition(conditions, "Ready")
if is_true(ready) then
  hs.status = "Healthy"
  hs.message = say(ready, "Ready")
  return hs
end
if ready ~= nil then
  hs.status = "Progressing"
  hs.message = say(ready, "Not ready")
  return hs
end

local phase = status.phase
if phase == "Ready" or phase == "Complete" then
  hs.status = "Healthy"
elseif phase == "Failed" or phase == "Stalled" then
  hs.status = "Degraded"
elseif phase == "Cancelled" or phase == "Paused" then
  hs.status = "Suspended"
else
  hs.status = "Progressing"
end
hs.message = phase or "Waiting for conditions"
return hs
