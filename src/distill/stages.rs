//! Which outputs are matched, resolved against the student's and every teacher's output list
//! (stage feature maps, then logits). Mismatches are reported before training starts instead of
//! surfacing as shape panics mid-run (the reference's dpn/densenet/googlenet index bugs, §1.4).

use burn::tensor::Tensor;

use super::config::StageSpec;
use super::pool::{PoolKind, channel_reduce, pool_map, stage_feature};
use crate::error::{Error, Result};
use crate::models::ModelOutput;

/// A matched output, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    /// Position in the student's output list.
    pub student_pos: usize,
    /// Position in each teacher's output list.
    pub teacher_pos: Vec<usize>,
    /// `None` for the logits; the pooled length for a feature stage.
    pub out_dim: Option<usize>,
    /// Width of the matched vectors (= discriminator input width).
    pub dim: usize,
    pub gamma: f64,
    pub eta: f64,
}

impl Stage {
    pub fn is_logits(&self) -> bool {
        self.out_dim.is_none()
    }
}

/// A model taking part: its name for messages and its number of stage feature maps.
pub struct Participant<'a> {
    pub name: &'a str,
    pub stages: usize,
}

fn resolve_index(index: i64, len: usize) -> Option<usize> {
    let pos = if index < 0 { len as i64 + index } else { index };
    (0..len as i64).contains(&pos).then_some(pos as usize)
}

pub fn resolve(
    specs: &[StageSpec],
    student: &Participant,
    teachers: &[Participant],
    num_classes: usize,
) -> Result<Vec<Stage>> {
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        let locate = |p: &Participant| -> Result<(usize, bool)> {
            let len = p.stages + 1;
            let pos = resolve_index(spec.index, len).ok_or_else(|| {
                Error::Config(format!(
                    "meal.stages[{i}].index = {}: {} has only {len} outputs ({} stage feature maps + logits); valid indices are {}..={} or -{len}..=-1",
                    spec.index,
                    p.name,
                    p.stages,
                    0,
                    len - 1
                ))
            })?;
            Ok((pos, pos == p.stages))
        };
        let (student_pos, student_logits) = locate(student)?;
        let mut teacher_pos = Vec::with_capacity(teachers.len());
        for t in teachers {
            let (pos, logits) = locate(t)?;
            if logits != student_logits {
                let what = |l: bool| if l { "the logits" } else { "a feature map" };
                return Err(Error::Config(format!(
                    "meal.stages[{i}].index = {} is {} of the student ({}) but {} of teacher {}: \
                     their output lists do not line up; use a negative index for the logits or pick \
                     indices valid for both",
                    spec.index,
                    what(student_logits),
                    student.name,
                    what(logits),
                    t.name
                )));
            }
            teacher_pos.push(pos);
        }
        let (out_dim, dim) = if student_logits {
            if let Some(d) = spec.out_dim
                && d != num_classes
            {
                return Err(Error::Config(format!(
                    "meal.stages[{i}]: out_dim = {d} for the logits, which have {num_classes} classes; omit out_dim for the logits"
                )));
            }
            (None, num_classes)
        } else {
            let d = spec.out_dim.ok_or_else(|| {
                Error::Config(format!(
                    "meal.stages[{i}]: a feature stage needs out_dim (the pooled length, e.g. 1000)"
                ))
            })?;
            (Some(d), d)
        };
        out.push(Stage {
            student_pos,
            teacher_pos,
            out_dim,
            dim,
            gamma: spec.gamma,
            eta: spec.eta,
        });
    }
    Ok(out)
}

/// The matched vector of `stage` from a model output at list position `pos`.
pub fn extract(out: &ModelOutput, pos: usize, stage: &Stage, pool: PoolKind) -> Tensor<2> {
    match stage.out_dim {
        None => out.logits.clone(),
        Some(d) => stage_feature(out.stages[pos].clone(), d, pool),
    }
}

/// A matched output and, when the discriminator may read it instead, the channel-mean map it
/// was pooled from.
pub struct Matched {
    pub vector: Tensor<2>,
    /// `(B, H·W)`; `Some` only for an average-pooled feature stage that pooling lengthens
    /// (`H·W < out_dim`), the one case where the discriminator fold saves work.
    pub map: Option<Tensor<2>>,
}

/// Like [`extract`], also keeping the map when `fold` is asked for and applies.
pub fn extract_matched(
    out: &ModelOutput,
    pos: usize,
    stage: &Stage,
    pool: PoolKind,
    fold: bool,
) -> Matched {
    if let Some(d) = stage.out_dim
        && fold
        && pool == PoolKind::Avg
    {
        let [_, _, h, w] = out.stages[pos].dims();
        if h * w < d {
            let map = channel_reduce(out.stages[pos].clone(), pool);
            return Matched {
                vector: pool_map(map.clone(), d, pool),
                map: Some(map),
            };
        }
    }
    Matched {
        vector: extract(out, pos, stage, pool),
        map: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(index: i64, out_dim: Option<usize>) -> StageSpec {
        StageSpec {
            index,
            out_dim,
            gamma: 1.0,
            eta: 1.0,
        }
    }

    #[test]
    fn resolves_and_reports_mismatches() {
        let s = Participant {
            name: "resnet20",
            stages: 3,
        };
        let t = Participant {
            name: "resnet18_cifar",
            stages: 4,
        };
        let r = resolve(&[spec(-1, None), spec(0, Some(100))], &s, &[t], 10).unwrap();
        assert_eq!(r[0].student_pos, 3);
        assert_eq!(r[0].teacher_pos, vec![4]);
        assert!(r[0].is_logits());
        assert_eq!(r[1].dim, 100);

        let t = Participant {
            name: "resnet18_cifar",
            stages: 4,
        };
        let e = resolve(&[spec(3, Some(10))], &s, &[t], 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("logits") && e.contains("resnet18_cifar"), "{e}");
        let e = resolve(&[spec(7, Some(10))], &s, &[], 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("only 4 outputs"), "{e}");
        let e = resolve(&[spec(0, None)], &s, &[], 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("out_dim"), "{e}");
        let e = resolve(&[spec(-1, Some(5))], &s, &[], 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10 classes"), "{e}");
    }
}
