-- wrk script: POST /v1/jobs with the job `anycore loadgen` sends by
-- default (a 16-element f32 axpy), byte for byte, so that the two load
-- generators ask the same of the server. Used by benches/loadgen.sh:
--   wrk -t1 -c128 -d10s -s benches/loadgen.lua http://127.0.0.1:7878
wrk.method = "POST"
wrk.path = "/v1/jobs"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":{"x":{"data":[0.0,1.0,2.0,3.0,4.0,5.0,6.0,7.0,8.0,9.0,10.0,11.0,12.0,13.0,14.0,15.0],"dtype":"f32","shape":[16]},"y":{"data":[-3.0,-2.5,-2.0,-1.5,-1.0,-0.5,0.0,0.5,1.0,1.5,2.0,2.5,3.0,3.5,4.0,4.5],"dtype":"f32","shape":[16]}},"kernel":"axpy","params":{"a":2}}'

-- A token, when the server needs one: ANYCORE_TOKEN, as the CLI takes it.
local token = os.getenv("ANYCORE_TOKEN")
if token ~= nil and token ~= "" then
   wrk.headers["Authorization"] = "Bearer " .. token
end
