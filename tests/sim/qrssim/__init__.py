"""QRS simulator: a Qlik Sense Repository Service impersonation for Butler's tests.

The entry point is ``tests/sim/qrs_sim.py``; the behaviour follows section 4 of
``reference/sense-interfaces.md``. Modules:

- ``util``     GUIDs, QRS and log4net date formats, shared constants
- ``config``   runtime knobs (``POST /_sim/config``)
- ``model``    fixture loading and the response-shaped entities
- ``filters``  the QRS ``?filter=`` language
- ``runs``     simulation clock, scheduler, task execution model, UDP datagrams
- ``recorder`` call log, counters, long-poll
- ``faults``   fault-injection rules
- ``qrs_api``  the QRS request pipeline and endpoints
- ``server``   the HTTPS/1.1 transport (mutual TLS, keep-alive, fault effects)
- ``control``  the plain-HTTP control API
- ``core``     wires everything into one ``Simulator``
"""
