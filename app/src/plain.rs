//! Plain elements as data: a part of the page described as a tree of tags, attributes and text, which
//! `browser::draw` brings the DOM to by patching it in place.
//!
//! For the parts mounted after hydration (the picture to start from with its painting, the LoRAs and
//! the saved styles; see `components::mount_plain`): as Leptos views they took 50 KB of the gzipped
//! bundle, over its budget (BENCHMARKS.md, "Budgets"). A tree is built by a plain function of the
//! state, so what a person sees is unit-tested without a browser; events reach the part's owner
//! through `data-act` attributes (`browser::on_acts`), not a closure per element.

/// An event in a part drawn from plain elements (`browser::on_acts`): its type (`click`, `input`,
/// `drop`...) and the `data-act`, `data-arg` and `value` of the element with an act it happened in,
/// empty where it happened outside every such element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Acted {
    pub kind: String,
    pub act: String,
    pub arg: String,
    pub value: String,
}

#[cfg(test)]
impl Acted {
    /// An event as `browser::on_acts` would read it (for tests of a part's acts).
    pub fn of(kind: &str, act: &str, arg: &str, value: &str) -> Acted {
        Acted {
            kind: kind.to_owned(),
            act: act.to_owned(),
            arg: arg.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// One element: its tag, its attributes in order, and either its text or its children.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct El {
    pub tag: &'static str,
    pub attrs: Vec<(&'static str, String)>,
    /// The element's whole text; an element with text has no children.
    pub text: Option<String>,
    pub children: Vec<El>,
}

impl El {
    /// An element with nothing in it.
    pub fn new(tag: &'static str) -> El {
        El {
            tag,
            attrs: Vec::new(),
            text: None,
            children: Vec::new(),
        }
    }

    /// An element with these fixed attributes: one call with a table of data, where an `attr` per
    /// attribute would be code (bundle bytes) at every element.
    pub fn with(tag: &'static str, attrs: &'static [(&'static str, &'static str)]) -> El {
        let mut el = El::new(tag);
        el.attrs
            .extend(attrs.iter().map(|(name, value)| (*name, (*value).to_owned())));
        el
    }

    /// With an attribute. `value` is also the live property of inputs and lists, and a radio's
    /// `checked` its live property (`browser::draw` keeps them equal), so a control shows what the
    /// state says.
    pub fn attr(mut self, name: &'static str, value: impl Into<String>) -> El {
        self.attrs.push((name, value.into()));
        self
    }

    /// With a boolean attribute (`disabled`, `hidden`) when `on`.
    pub fn flag(self, name: &'static str, on: bool) -> El {
        if on { self.attr(name, "") } else { self }
    }

    /// What a person does with it: `browser::on_acts` passes `act` and `arg` to the part's owner
    /// with every event in it.
    pub fn act(self, act: &'static str, arg: impl Into<String>) -> El {
        self.attr("data-act", act).attr("data-arg", arg)
    }

    /// With its text (shown as text, never read as HTML).
    pub fn text(mut self, text: impl Into<String>) -> El {
        self.text = Some(text.into());
        self
    }

    /// With a child after the others.
    pub fn child(mut self, child: El) -> El {
        self.children.push(child);
        self
    }

    /// With these children after the others.
    pub fn children(mut self, children: impl IntoIterator<Item = El>) -> El {
        self.children.extend(children);
        self
    }

    /// The attribute's value, if it has it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(attr, _)| *attr == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every element of the tree, this one first, depth first (for tests and lookups).
    pub fn walk(&self) -> Vec<&El> {
        let mut found = vec![self];
        for child in &self.children {
            found.extend(child.walk());
        }
        found
    }
}

/// The elements of a tree that `what` picks, depth first (for tests).
#[cfg(test)]
pub fn find(tree: &[El], what: impl Fn(&El) -> bool) -> Vec<&El> {
    tree.iter().flat_map(El::walk).filter(|el| what(el)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_reads_back_its_attributes_text_and_elements_in_order() {
        let tree = El::new("ul")
            .attr("class", "list")
            .children(["a", "b"].map(|name| El::new("li").act("pick", name).text(name)))
            .child(El::new("button").flag("disabled", true).flag("hidden", false));
        assert_eq!(tree.get("class"), Some("list"));
        let tags: Vec<&str> = tree.walk().iter().map(|el| el.tag).collect();
        assert_eq!(tags, ["ul", "li", "li", "button"]);
        let second = tree.walk()[2];
        assert_eq!(
            (second.get("data-act"), second.get("data-arg")),
            (Some("pick"), Some("b"))
        );
        assert_eq!(second.text.as_deref(), Some("b"));
        let button = tree.walk()[3];
        assert_eq!((button.get("disabled"), button.get("hidden")), (Some(""), None));
    }
}
