
Ï
5

service.name

quickstart

	host.name
laptop•

readme1.0ƒ
[ÿ÷˜Òi¶3?Æîá›~ÃÁ±t*GET /checkout09ÍUõQr†A–«Ö÷Qr†J
http.request.method
GETJ 
http.response.status_codeÈz