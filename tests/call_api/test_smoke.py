from tests.conftest import bearer


def test_create_list_end(api, user_token, user):
    r = api.post("/rest/call", data={"number": "+14155550123"}, headers=bearer(user_token))
    assert r.status_code == 201, r.json
    assert r.json["number"] == "+14155550123"
    assert r.json["subject"] == user.id
    token_call = r.json["token_call"]
    assert r.headers["Location"] == f"/rest/call?token_call={token_call}"
    r = api.get("/rest/call", headers=bearer(user_token))
    assert [c["token_call"] for c in r.json["calls"]] == [token_call]
    r = api.put("/rest/call", data={"token_call": token_call}, headers=bearer(user_token))
    assert r.status_code == 200 and r.json["status"] == "ended" and r.json["end_reason"] == "hangup"
