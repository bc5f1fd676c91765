"""What the agent does about an incident: heal it (``actions.healers``) and tell people about it
(``actions.notifiers``). Each kind is one module behind one small interface, registered in its
package's registry; actions act, while the incident engine decides when and how often.
"""
