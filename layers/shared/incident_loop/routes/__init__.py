"""The API's routers, one per feature (CostSim's stays with CostSim: nothing below it imports it).

The loop's and the failures' routers live here, above those features: the loop persists an
incident through failures/, so a router inside either folder would point back up at the HTTP
package that the features stand under.
"""
